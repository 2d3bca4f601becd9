"""`refinery forget`: record a deletion request in the ledger (requests/ledger.parquet), serve it
at once, and publish the model that serves it.

The request is resolved to stable sample keys against the prepared sample index and appended to
the ledger; on any error nothing is written. Then the pipeline reruns what it affects: by default
the request is served approximately (the unlearn stage runs every configured method on the
deployed model, and the one closest to retraining, or `forget.serve_method`, is published to
data/deploy/); with `--exact` the whole lineage retrains without the samples. The nightly flow
retrains exactly what is still served approximately, and purges (flows/purge.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError
from .run_cli import say


def chosen_keys(args: argparse.Namespace, index, seed: int, recorded: set[str]) -> tuple[list[str], dict]:
    """(the sample keys a request names, how they were chosen); raise ForgetRequestError (one line).
    A fraction is drawn, by key hash, from the training samples no earlier request named."""
    import numpy as np
    from refinery.data import ForgetRequestError, read_ids_file, resolve_request
    from refinery.data.keys import hash_rank

    train = (index["split"] == "train").to_numpy()
    keys = index["sample_key"].to_numpy(dtype=object)
    if args.classes:
        try:
            classes = [int(c) for c in args.classes.split(",") if c.strip()]
        except ValueError:
            raise UsageError(f"--classes: expected comma-separated integers, got {args.classes!r}") from None
        ids = resolve_request("classes", y=index["label"].to_numpy(), train_mask=train, seed=seed, classes=classes,
                              source="forget request")
        return keys[ids].tolist(), {"classes": classes}
    if args.fraction is not None:
        if not 0.0 < args.fraction < 1.0:
            raise UsageError(f"--fraction: must lie strictly between 0 and 1, got {args.fraction}")
        n = max(1, int(round(args.fraction * int(train.sum()))))
        fresh = np.array([k for k in keys[train].tolist() if k not in recorded], dtype=object)
        return hash_rank(seed, fresh, f"request-{len(recorded)}")[:n].tolist(), {"fraction": args.fraction}
    named = read_ids_file(Path(args.ids))
    if named.dtype != object:  # sample ids of the current preparation: resolved to keys now
        known = index["sample_id"].to_numpy()
        unknown = np.setdiff1d(named, known)
        if len(unknown):
            raise ForgetRequestError(f"--ids: unknown sample ids {unknown[:5].tolist()}{' ...' * (len(unknown) > 5)} "
                                     f"(ids run from 0 to {int(known.max())})")
        named = index.set_index("sample_id").loc[named, "sample_key"].to_numpy(dtype=object)
    values, counts = np.unique(named.astype(str), return_counts=True)
    if (counts > 1).any():
        raise ForgetRequestError(f"--ids: duplicate samples {values[counts > 1][:5].tolist()}")
    unknown = sorted(set(values.tolist()) - set(keys.tolist()))
    if unknown:
        raise ForgetRequestError(f"--ids: unknown sample keys {unknown[:5]}{' ...' * (len(unknown) > 5)}")
    return values.tolist(), {"ids_file": Path(args.ids).name}


def record_request(args: argparse.Namespace, root: Path, seed: int):
    """Append the request to the ledger; return (request or None when nothing new, repeated keys)."""
    from refinery.data import ForgetRequestError
    from refinery.requests import read_ledger, record
    from refinery.store import read_table

    index_path = root / "data" / "prepared" / "index.parquet"
    if not index_path.exists():
        raise ForgetRequestError(f"{index_path.relative_to(root)} not found: "
                                 "run `refinery run` once before a forget request")
    index = read_table(index_path)
    if "sample_key" not in index.columns:
        raise ForgetRequestError(f"{index_path.relative_to(root)} predates sample keys: run `refinery run` first")
    index = index[index["split"] != "forgotten"]
    recorded = {k for r in read_ledger(root) for k in r.keys}
    keys, how = chosen_keys(args, index, seed, recorded)
    trainable = set(index.loc[index["split"] == "train", "sample_key"])
    if trainable and trainable <= set(keys) | recorded:
        raise ForgetRequestError("forget request: it would cover every training sample; nothing would remain")
    content = index.set_index("sample_key").loc[keys, "content"].astype(str).tolist()
    return record(root, keys, content, dict(how, exact=bool(args.exact)), note=args.note or "")


def cmd_forget(args: argparse.Namespace, root: Path) -> int:
    """Hold the workspace lock from before the request is read until the rerun is done."""
    from .dvc_runner import workspace_lock

    with workspace_lock(root):
        return forget_locked(args, root)


def forget_locked(args: argparse.Namespace, root: Path) -> int:
    from refinery import config as C
    from refinery.resolve import with_fingerprint, write_params

    cfg = C.validate(C.read_yaml(root / "params.yaml"), "params.yaml")
    request, repeated = record_request(args, root, cfg.seed)
    if request is None:
        say(f"nothing new: the ledger already holds all {len(repeated)} of these samples")
    else:
        say(f"recorded {request.request_id} in requests/ledger.parquet: {len(request.keys)} samples"
            + (f" ({len(repeated)} already recorded earlier)" if repeated else "")
            + "; commit requests/ledger.parquet with the project")
    cfg = with_fingerprint(root, cfg.model_copy(update={"forget": cfg.forget.model_copy(
        update={"exact": bool(args.exact)})}))
    write_params(root, cfg)
    if args.no_run:
        say("not run (--no-run): `refinery run` (or the nightly flow) serves it")
        return 0
    from .publish import run_and_publish

    return run_and_publish(root)
