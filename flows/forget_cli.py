"""`refinery forget`: record a deletion request in params.yaml, validated against the prepared
sample index first, and rerun what it affects."""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError
from .run_cli import cmd_run, say


def forget_section(args: argparse.Namespace, root: Path) -> dict:
    """The `forget` config section a request asks for (not yet validated against the data)."""
    if args.classes:
        try:
            request = {"mode": "classes", "classes": [int(c) for c in args.classes.split(",") if c.strip()]}
        except ValueError:
            raise UsageError(f"--classes: expected comma-separated integers, got {args.classes!r}") from None
    elif args.fraction is not None:
        request = {"mode": "fraction", "fraction": args.fraction}
    else:  # params.yaml records the file relative to the project, so it must lie inside it
        ids_file, project = Path(args.ids).resolve(), Path(root).resolve()
        if not ids_file.is_relative_to(project):
            raise UsageError(f"--ids {args.ids}: the ids file must lie inside the project ({project}); "
                             f"copy it in, e.g. to {project / ids_file.name}, and pass that path")
        request = {"mode": "ids", "ids_file": ids_file.relative_to(project).as_posix()}
    return dict(request, exact=bool(args.exact))


def check_request(root: Path, cfg) -> int:
    """Resolve the request against the prepared sample index; raise ForgetRequestError (one
    line) for an unknown or duplicate id, an empty request, or one covering every sample."""
    import numpy as np
    from refinery.data import ForgetRequestError, read_ids_file, resolve_request
    from refinery.store import read_table

    index_path = root / "data" / "prepared" / "index.parquet"
    if not index_path.exists():
        raise ForgetRequestError(f"{index_path.relative_to(root)} not found: "
                                 "run `refinery run` once before a forget request")
    index = read_table(index_path)
    f = cfg.forget
    ids = read_ids_file(root / f.ids_file) if f.mode == "ids" else None
    if ids is not None:
        unknown = np.setdiff1d(ids, index["sample_id"].to_numpy())
        if len(unknown):
            raise ForgetRequestError(f"--ids: unknown sample ids {unknown[:5].tolist()}{' ...' * (len(unknown) > 5)} "
                                     f"(ids run from 0 to {int(index['sample_id'].max())})")
    chosen = resolve_request(f.mode, y=index["label"].to_numpy(), train_mask=(index["split"] == "train").to_numpy(),
                             seed=cfg.seed, classes=f.classes, fraction=f.fraction, ids=ids, source="forget request")
    return len(chosen)


def cmd_forget(args: argparse.Namespace, root: Path) -> int:
    """Record a deletion request in params.yaml and rerun what it affects. The request is
    validated against data/prepared/index.parquet first: on any error nothing is written. The
    workspace lock is held from before the request is read until the rerun is done."""
    from .dvc_runner import workspace_lock

    with workspace_lock(root):
        return forget_locked(args, root)


def forget_locked(args: argparse.Namespace, root: Path) -> int:
    from refinery import config as C
    from refinery.resolve import with_fingerprint, write_params


    raw = C.read_yaml(root / "params.yaml")
    previous = raw.get("forget")
    raw["forget"] = C.deep_merge(raw.get("forget", {}), forget_section(args, root))
    cfg = with_fingerprint(root, C.validate(raw, "forget request"))  # the ids file by content
    count = check_request(root, cfg)
    write_params(root, cfg)
    how = "exact: the lineage retrains without them" if cfg.forget.exact else "approximate: the student unlearns them"
    if previous == cfg.forget.model_dump(mode="json"):
        say(f"forget request unchanged: params.yaml already holds it ({cfg.forget.mode}, {count} training samples; "
            f"{how})")
    else:
        say(f"forget request recorded in params.yaml ({cfg.forget.mode}, {count} training samples; {how})")
    if args.no_run:
        say("not run (--no-run): `refinery run` processes it")
        return 0
    return cmd_run(argparse.Namespace(pipeline=None, set=[], force=False, seeds=None), root, forget_request=True)
