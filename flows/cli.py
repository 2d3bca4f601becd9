"""The `refinery` command line.

    refinery run [--pipeline NAME] [--set key=value ...] [--seeds 5] [--force]
    refinery stage NAME [--seed S]
    refinery forget (--ids FILE | --classes 3,7 | --fraction 0.1) [--exact] [--no-run]
    refinery report
    refinery ui [--port 4200]
    refinery server (start | stop | status) [--port 4200]
    refinery serve (--cron "0 3 * * *" | --interval SECONDS)
    refinery deploy --pool NAME [--cron "0 3 * * *"]
    refinery sweep --grid distill.loss=kd,sinkhorn --grid seed=0,1 [--address tcp://...]

Order matters here: arguments are parsed first (so `--help` and a bad argument answer at once),
then `flows.env.configure` sets Prefect's environment, and only then does a command import what
it needs (torch, prefect, dvc), because Prefect reads its settings once, on first import. This
module imports only the standard library, flows.env and tasks.stages at the top.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import time
from pathlib import Path

from tasks.stages import AGGREGATE, STAGE_NAMES

from .env import configure, find_root, use_project_server

# Commands that record runs in Prefect: they use the project server when one is up.
PREFECT_COMMANDS = {"run", "stage", "forget", "serve", "deploy", "sweep"}
# The errors a user can fix: one line on stderr and exit code 2, no traceback.
USER_ERROR_TYPES = {"refinery.config": "ConfigError", "refinery.data.base": "DataSourceError",
                    "refinery.data.forget": "ForgetRequestError", "refinery.store.arrays": "ArtifactError",
                    "refinery.train": "TrainingDiverged", "flows.report_cli": "ReportError"}
# What the machine refuses (disk full, file too large, read-only, no permission): one line, exit 2.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def one_line_error(exc: BaseException) -> bool:
    """Whether `exc` is a user's error or the machine's refusal: said in one line, no traceback."""
    return isinstance(exc, user_errors()) or (isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS)


class NoTracebackForOneLineErrors(logging.Filter):
    """Prefect logs a failed run's exception with its traceback; for an error `main` states in
    one line, the traceback is noise (the run's state in Prefect still names the error)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and one_line_error(record.exc_info[1]):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_one_line_errors() -> None:
    """Put the filter on every handler Prefect's logging set up (call after prefect is imported)."""
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.Logger.manager.loggerDict)
                                      if name.startswith("prefect"))]
    for handler in {h for lg in loggers for h in lg.handlers}:
        if not any(isinstance(f, NoTracebackForOneLineErrors) for f in handler.filters):
            handler.addFilter(NoTracebackForOneLineErrors())


class UsageError(Exception):
    """A command used in a way that cannot work (one line, exit code 2)."""


def user_errors() -> tuple[type, ...]:
    """The user-error classes of the modules loaded so far: an error of a module that was never
    imported cannot have been raised, and importing one here would cost seconds."""
    loaded = (getattr(sys.modules[m], name) for m, name in USER_ERROR_TYPES.items() if m in sys.modules)
    return (UsageError, FileNotFoundError, *loaded)


def __getattr__(name: str):
    if name == "USER_ERRORS":  # every user-error class (imports their modules)
        import importlib

        for module in USER_ERROR_TYPES:
            importlib.import_module(module)
        return user_errors()
    raise AttributeError(name)


MESSAGES = {"ran": "ran", "restored": "restored from DVC's run cache", "skipped": "up to date, skipped"}


def say(text: str) -> None:
    print(f"refinery: {text}", flush=True)


def listed(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def say_prefect(root: Path) -> None:
    """Say where this command's runs are recorded; without a server to record in, start a
    temporary one for this command alone (stopped when the command ends, however it ends)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        say(f"Prefect: recording in the server at {url}")
        return
    say("Prefect: starting a temporary server for this command (takes 10-20 s; `refinery server start` "
        "keeps one up for every command)")
    from .server import start_temporary

    os.environ["PREFECT_API_URL"] = start_temporary(root)


def cmd_run(args: argparse.Namespace, root: Path, forget_request: bool = False) -> int:
    """Hold the workspace lock from before params.yaml is written until the pipeline is done."""
    from .dvc_runner import workspace_lock

    with workspace_lock(root):
        return run_locked(args, root, forget_request)


def run_locked(args: argparse.Namespace, root: Path, forget_request: bool) -> int:
    from refinery.resolve import resolve_config, write_params
    from tasks.stages import sync_dvc_yaml

    cfg = resolve_config(root, args.pipeline, [*(args.set or []), *seeds_override(getattr(args, "seeds", None))])
    write_params(root, cfg)
    if sync_dvc_yaml(root):  # an edit added an import, or the seed group changed: the stage list follows
        say("dvc.yaml rewritten: the stages' code imports or the seed group changed (commit it with the code)")
    if cfg.seeds:
        say(f"seed group of {len(cfg.seeds)} seeds {cfg.seeds}: each trains under data/seeds/<seed>/ on the split of "
            f"seed {cfg.seed}; data/reports/ holds the means, 95% CIs and paired verdicts")
    from .dvc_runner import plan

    todo = plan(root)
    if args.force:
        say(f"pipeline '{cfg.name}': --force: every stage reruns ({listed(todo.order)})")
    elif not todo.todo:
        say(f"pipeline '{cfg.name}': up to date ({listed(todo.order)}); nothing to run (--force reruns every stage)")
        if not os.environ.get("PREFECT_API_URL"):
            return 0  # a temporary server only to record six skips would cost more than the check
    else:
        parts = [f"to run (or restore from DVC's run cache): {listed(todo.stale)}"]
        parts += [f"then, if their inputs change: {listed(todo.downstream)}"] * bool(todo.downstream)
        parts += [f"up to date: {listed(todo.fresh)}"] * bool(todo.fresh)
        say(f"pipeline '{cfg.name}': {'; '.join(parts)}")
    say_prefect(root)
    from prefect import tags

    from .pipeline import pipeline_flow

    quiet_one_line_errors()

    started = time.perf_counter()
    labels = [f"pipeline:{cfg.name}"] + ["forget-request"] * forget_request + ["force"] * bool(args.force)
    with tags(*labels):
        table = pipeline_flow(root=str(root), force=args.force, pipeline=cfg.name, overrides=list(args.set or []),
                              forget=cfg.forget.model_dump(mode="json"))
    by_action = {action: [row["stage"] for row in table if row["action"] == action] for action in MESSAGES}
    did = "; ".join(f"{MESSAGES[action]}: {', '.join(names)}" for action, names in by_action.items() if names)
    say(f"done in {time.perf_counter() - started:.1f}s: {did}; report: data/reports/report.md")
    return 0


def seeds_override(text: str | None) -> list[str]:
    """`--seeds 5` -> seeds 0..4; `--seeds 0,3,7` -> those; `--seeds 1` -> no group (one seed, `seed`)."""
    if text is None:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--seeds: expected a count (5) or comma-separated seeds (0,1,2), got {text!r}") from None
    if len(values) == 1:
        if values[0] < 1:
            raise UsageError(f"--seeds: a count must be at least 1, got {values[0]}")
        values = list(range(values[0]))
    return ["seeds=null"] if len(values) == 1 else [f"seeds=[{','.join(map(str, values))}]"]


def cmd_stage(args: argparse.Namespace, root: Path) -> int:
    from refinery import config as C

    from tasks.stages import SEEDED_STAGES, dvc_name

    cfg = C.load(root / "params.yaml")  # fail on a bad config before Prefect starts
    if args.seed is not None and args.name not in SEEDED_STAGES:
        raise UsageError(f"stage {args.name}: --seed names a member of a seed group; {args.name} has none")
    say_prefect(root)
    from .pipeline import stage_flow

    quiet_one_line_errors()

    stage_flow(name=dvc_name(args.name, args.seed), root=str(root), pipeline=cfg.name)
    return 0


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


def cmd_report(args: argparse.Namespace, root: Path) -> int:
    from .report_cli import print_report

    return print_report(root, compare=args.compare)


def cmd_ui(args: argparse.Namespace, root: Path) -> int:
    """Serve the project's Prefect server and UI in the foreground; Ctrl-C (or SIGTERM) stops both."""
    from . import server

    state = server.find_server(root)
    if state:
        say(f"the project server is already up: Prefect UI at {state['ui_url']} (pid {state['pid']}; "
            "`refinery server stop` stops it)")
        return 0

    def announce(state: dict) -> None:
        say(f"Prefect UI at {state['ui_url']} over the runs recorded under {root / '.prefect'}; while it is up, "
            "every refinery command in this project records there. Ctrl-C stops it.")

    code = server.serve_foreground(root, args.host, args.port, announce)
    say("Prefect server stopped")
    return code


def cmd_server(args: argparse.Namespace, root: Path) -> int:
    """`refinery server start|stop|status`: a project server kept up in the background."""
    from . import server

    state = server.find_server(root)
    if args.action == "status":
        if not state:
            say("no project server is up; each command starts a temporary one (`refinery server start`)")
            return 1
        owner = "until `refinery server stop`" if state.get("keep") else "while its `refinery ui` runs"
        say(f"project server up at {state['ui_url']} (pid {state['pid']}, since {state['started']}, kept {owner})")
        return 0
    if args.action == "start":
        if state:
            say(f"the project server is already up at {state['ui_url']} (pid {state['pid']})")
            return 0
        state, _ = server.start(root, args.host, args.port, keep=True)
        say(f"project server up at {state['ui_url']} (pid {state['pid']}, log .prefect/server.log); every refinery "
            "command in this project records there until `refinery server stop`")
        return 0
    stopped = server.stop(root)
    say(f"project server stopped (pid {stopped['pid']})" if stopped else "no project server was running")
    return 0


def cmd_serve(args: argparse.Namespace, root: Path) -> int:
    if not (args.cron or args.interval):
        raise UsageError("serve: give --cron or --interval")
    if not os.environ.get("PREFECT_API_URL"):  # a temporary server cannot schedule runs
        raise UsageError("serve: a schedule needs a Prefect server that stays up: run `refinery server start` "
                         "first, or set PREFECT_API_URL")
    say_prefect(root)
    from .nightly import serve

    serve(root, args.name, cron=args.cron, interval=args.interval)
    return 0


def cmd_deploy(args: argparse.Namespace, root: Path) -> int:
    say_prefect(root)
    from .nightly import deploy

    deployment_id = deploy(root, args.name, args.pool, args.cron)
    say(f"deployment refinery-nightly/{args.name} ({deployment_id}) on work pool {args.pool!r}; "
        f"start a worker with: prefect worker start --pool {args.pool}")
    return 0


def cmd_sweep(args: argparse.Namespace, root: Path) -> int:
    from .sweep import parse_grid

    try:
        points = parse_grid(args.grid)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    say(f"sweep of {len(points)} point(s), one DVC experiment each")
    say_prefect(root)
    from .sweep import run_sweep

    done = run_sweep(root, args.grid, address=args.address, workers=args.workers)
    say(f"sweep done ({len(done)} experiments); compare them with `dvc exp show`")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery", description="Reproducible model-lifecycle pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline (skips what DVC says is up to date)")
    run.add_argument("--pipeline", help="a preset from pipelines/ (smoke, digits, mnist1d)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--force", action="store_true", help="rerun every stage")
    run.add_argument("--seeds", metavar="N|S1,S2,...",
                     help="a seed group: N seeds (0..N-1) or the seeds listed; the report gives means, 95%% CIs "
                          "and paired verdicts over them (`--seeds 1`: one seed, no group)")
    stage = sub.add_parser("stage", help="run one stage (what dvc.yaml calls)")
    stage.add_argument("name", choices=[*STAGE_NAMES, AGGREGATE])
    stage.add_argument("--seed", type=int, help="the member of a seed group to run it for")
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
    srv = sub.add_parser("server", help="keep this project's Prefect server up in the background, for every command")
    srv.add_argument("action", choices=["start", "stop", "status"])
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=4200)
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
            "ui": cmd_ui, "server": cmd_server, "serve": cmd_serve, "deploy": cmd_deploy, "sweep": cmd_sweep}


def prepare(args: argparse.Namespace) -> Path:
    """Set up this process for a parsed command, before anything imports prefect or torch: the
    project's Prefect settings, the CPU settings, and the project server when one is up."""
    root = find_root()
    configure(root)
    from refinery.runtime import configure_cpu

    configure_cpu()  # before torch loads: passive OpenMP waiting, heap reuse (see refinery/runtime.py)
    if args.command in PREFECT_COMMANDS:
        use_project_server(root)
    return root


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before any heavy import: --help and bad arguments answer at once
    # SIGTERM ends a command as Ctrl-C does: the flow run is marked crashed, the server stopped.
    signal.signal(signal.SIGTERM, interrupt)
    root = prepare(args)
    try:
        return COMMANDS[args.command](args, root)
    except KeyboardInterrupt:
        print("refinery: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        from .dvc_runner import WorkspaceBusy

        if isinstance(exc, user_errors()):
            print(f"refinery: error: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, WorkspaceBusy):
            print(f"refinery: error: {exc}", file=sys.stderr)
            return 3
        if isinstance(exc, OSError) and exc.errno in MACHINE_ERRNOS:
            print(f"refinery: error: {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
