"""The `refinery` command line.

    refinery run [--pipeline NAME] [--set key=value ...] [--force]
    refinery stage NAME
    refinery forget (--ids FILE | --classes 3,7 | --fraction 0.1) [--exact] [--no-run]
    refinery report
    refinery ui [--port 4200]
    refinery serve (--cron "0 3 * * *" | --interval SECONDS)
    refinery deploy --pool NAME [--cron "0 3 * * *"]
    refinery sweep --grid distill.loss=kd,sinkhorn --grid seed=0,1 [--address tcp://...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from refinery.runtime import configure_cpu

configure_cpu()  # before torch loads: passive OpenMP waiting, heap reuse (see refinery/runtime.py)

from refinery import config as C  # noqa: E402
from refinery.data import DataSourceError, ForgetRequestError
from refinery.store import ArtifactError
from refinery.train import TrainingDiverged
from refinery.resolve import resolve_config, write_params
from tasks.common import find_root
from tasks.stages import STAGE_NAMES, sync_dvc_yaml

from .env import configure

USER_ERRORS = (C.ConfigError, DataSourceError, ForgetRequestError, ArtifactError, TrainingDiverged, FileNotFoundError)


def cmd_run(args: argparse.Namespace, root: Path) -> int:
    cfg = resolve_config(root, args.pipeline, args.set or [])
    write_params(root, cfg)
    if sync_dvc_yaml(root):  # an edit added an import: the stage now depends on that file too
        print("refinery: dvc.yaml rewritten: a stage's code imports changed (commit it with the code)")
    from .dvc_runner import changed_stages

    todo = changed_stages(root)
    if not todo and not args.force:
        print(f"refinery: pipeline '{cfg.name}' is up to date; nothing to run (use --force to rerun)")
        return 0
    print(f"refinery: pipeline '{cfg.name}': running {', '.join(todo) if not args.force else 'every stage'}")
    from .pipeline import pipeline_flow

    started = time.perf_counter()
    table = pipeline_flow(root=str(root), force=args.force)
    done = ", ".join(f"{row['stage']}={row['action']}" for row in table)
    print(f"refinery: done in {time.perf_counter() - started:.1f}s ({done}); report: data/reports/report.md")
    return 0


def cmd_stage(args: argparse.Namespace, root: Path) -> int:
    C.load(root / "params.yaml")  # fail on a bad config before Prefect starts
    from .pipeline import stage_flow

    stage_flow(name=args.name, root=str(root))
    return 0


def forget_section(args: argparse.Namespace, root: Path) -> dict:
    """The `forget` config section a request asks for (not yet validated against the data)."""
    if args.classes:
        try:
            request = {"mode": "classes", "classes": [int(c) for c in args.classes.split(",") if c.strip()]}
        except ValueError:
            raise C.ConfigError(f"--classes: expected comma-separated integers, got {args.classes!r}") from None
    elif args.fraction is not None:
        request = {"mode": "fraction", "fraction": args.fraction}
    else:
        request = {"mode": "ids", "ids_file": os.path.relpath(Path(args.ids).resolve(), root)}
    return dict(request, exact=bool(args.exact))


def check_request(root: Path, cfg: C.PipelineConfig) -> int:
    """Resolve the request against the prepared sample index; raise ForgetRequestError (one
    line) for an unknown or duplicate id, an empty request, or one covering every sample."""
    import numpy as np
    from refinery.data import read_ids_file, resolve_request
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
    validated against data/prepared/index.parquet first: on any error nothing is written."""
    raw = C.read_yaml(root / "params.yaml")
    raw["forget"] = C.deep_merge(raw.get("forget", {}), forget_section(args, root))
    cfg = C.validate(raw, "forget request")
    count = check_request(root, cfg)
    write_params(root, cfg)
    how = "exact: the whole lineage retrains without them" if cfg.forget.exact else "unlearn and evaluate rerun"
    print(f"refinery: forget request recorded in params.yaml ({cfg.forget.mode}, {count} training samples; {how})")
    if args.no_run:
        return 0
    return cmd_run(argparse.Namespace(pipeline=None, set=[], force=False), root)


def cmd_report(args: argparse.Namespace, root: Path) -> int:
    from .report_cli import print_report

    return print_report(root, compare=args.compare)


def cmd_ui(args: argparse.Namespace, root: Path) -> int:
    print(f"refinery: Prefect UI at http://{args.host}:{args.port} (runs recorded under {os.environ['PREFECT_HOME']})")
    return subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", args.host,
                            "--port", str(args.port)])


def cmd_serve(args: argparse.Namespace, root: Path) -> int:
    from .nightly import serve

    if not (args.cron or args.interval):
        raise C.ConfigError("serve: give --cron or --interval")
    serve(root, args.name, cron=args.cron, interval=args.interval)
    return 0


def cmd_deploy(args: argparse.Namespace, root: Path) -> int:
    from .nightly import deploy

    deployment_id = deploy(root, args.name, args.pool, args.cron)
    print(f"refinery: deployment refinery-nightly/{args.name} ({deployment_id}) on work pool {args.pool!r}; "
          f"start a worker with: prefect worker start --pool {args.pool}")
    return 0


def cmd_sweep(args: argparse.Namespace, root: Path) -> int:
    from .sweep import parse_grid, run_sweep

    try:
        points = parse_grid(args.grid)
    except ValueError as exc:
        raise C.ConfigError(str(exc)) from None
    print(f"refinery: sweep of {len(points)} point(s), one DVC experiment each")
    done = run_sweep(root, args.grid, address=args.address, workers=args.workers)
    print(f"refinery: sweep done ({len(done)} experiments); compare them with `dvc exp show`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery", description="Reproducible model-lifecycle pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline (skips what DVC says is up to date)")
    run.add_argument("--pipeline", help="a preset from pipelines/ (smoke, digits, mnist1d)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--force", action="store_true", help="rerun every stage")
    stage = sub.add_parser("stage", help="run one stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=STAGE_NAMES)
    forget = sub.add_parser("forget", help="record a deletion request and rerun what it affects")
    group = forget.add_mutually_exclusive_group(required=True)
    group.add_argument("--ids", help="CSV or Parquet file with a sample_id column")
    group.add_argument("--classes", help="comma-separated class labels, e.g. 3,7")
    group.add_argument("--fraction", type=float, help="a random fraction of the training set")
    forget.add_argument("--no-run", action="store_true", help="only record the request")
    forget.add_argument("--exact", action="store_true",
                        help="retrain the whole lineage (teacher, upcycle, cache, student) without the samples")
    report = sub.add_parser("report", help="print the summary table")
    report.add_argument("--compare", metavar="REV", help="diff metrics against a git revision or DVC experiment")
    ui = sub.add_parser("ui", help="serve the Prefect UI over this project's runs")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=4200)
    serve = sub.add_parser("serve", help="serve the nightly flow (pull, rerun what changed, push) "
                                          "as a scheduled Prefect deployment")
    serve.add_argument("--cron", help='a cron schedule, e.g. "0 3 * * *"')
    serve.add_argument("--interval", type=float, metavar="SECONDS", help="or run every SECONDS")
    serve.add_argument("--name", default="nightly")
    deploy = sub.add_parser("deploy", help="register the nightly flow on a Prefect work pool")
    deploy.add_argument("--pool", required=True, help="work pool name (created as type 'process' if missing)")
    deploy.add_argument("--cron", default="0 3 * * *")
    deploy.add_argument("--name", default="nightly")
    sweep = sub.add_parser("sweep", help="run a grid of DVC experiments through a Dask task runner")
    sweep.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                       help="one axis of the grid; repeat for more")
    sweep.add_argument("--address", help="a running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster)")
    sweep.add_argument("--workers", type=int, default=1, help="threads of the local cluster")
    return parser


COMMANDS = {"run": cmd_run, "stage": cmd_stage, "forget": cmd_forget, "report": cmd_report,
            "ui": cmd_ui, "serve": cmd_serve, "deploy": cmd_deploy, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = find_root()
    configure(root)
    try:
        return COMMANDS[args.command](args, root)
    except USER_ERRORS as exc:
        print(f"refinery: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("refinery: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        from .dvc_runner import WorkspaceBusy

        if isinstance(exc, WorkspaceBusy):
            print(f"refinery: error: {exc}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
