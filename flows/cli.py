"""The `refinery` command line.

    refinery run [--pipeline NAME] [--set key=value ...] [--seeds 5] [--force]
    refinery stage NAME [--seed S]
    refinery forget (--ids FILE | --classes 3,7 | --fraction 0.1) [--exact] [--note TEXT] [--no-run]
    refinery requests (list | show ID | purge [ID ...])
    refinery report
    refinery ui [--port 4200]
    refinery server (start | stop | status) [--port 4200]
    refinery serve (--cron "0 3 * * *" | --interval SECONDS)
    refinery deploy --pool NAME [--cron "0 3 * * *"]
    refinery sweep --grid distill.loss=kd,sinkhorn --grid seed=0,1 [--workers N] [--pool NAME]

Order matters here: arguments are parsed first (so `--help` and a bad argument answer at once),
then `flows.env.configure` sets Prefect's environment, and only then does a command import what
it needs (torch, prefect, dvc), because Prefect reads its settings once, on first import. This
module and the command modules it imports at the top (run_cli, forget_cli, errors, env) import
only the standard library and tasks.stages there. `refinery run` and `refinery forget` live in
run_cli.py and forget_cli.py, the errors stated in one line in errors.py.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from tasks.stages import AGGREGATE, STAGE_NAMES

from .env import configure, find_root, use_project_server
from .errors import UsageError, all_user_errors, one_line, quiet_one_line_errors
from .forget_cli import cmd_forget
from .requests_cli import add_parser as requests_parser
from .requests_cli import cmd_requests
from .run_cli import cmd_run, say, say_prefect

# Commands that record runs in Prefect: they use the project server when one is up.
PREFECT_COMMANDS = {"run", "stage", "forget", "serve", "deploy", "sweep", "requests"}


def __getattr__(name: str):
    if name == "USER_ERRORS":  # every user-error class (imports their modules)
        return all_user_errors()
    raise AttributeError(name)


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

    # Ctrl-C as SIGTERM: a KeyboardInterrupt, which Prefect's serve loop takes as "shut down". With
    # Python's own SIGINT handler asyncio.run would instead cancel the runner's task, whose cleanup
    # waits on its workers and never returns: the command stayed up after Ctrl-C.
    signal.signal(signal.SIGINT, interrupt)
    serve(root, args.name, cron=args.cron, interval=args.interval)
    return 0


def cmd_deploy(args: argparse.Namespace, root: Path) -> int:
    if not os.environ.get("PREFECT_API_URL"):  # a deployment on a temporary server is gone when the command ends
        raise UsageError("deploy: a deployment needs a Prefect server that stays up: run `refinery server start` "
                         "first, or set PREFECT_API_URL")
    say_prefect(root)
    from .nightly import deploy

    deployment_id = deploy(root, args.name, args.pool, args.cron)
    say(f"deployment refinery-nightly/{args.name} ({deployment_id}) on work pool {args.pool!r}; "
        f"start a worker with: prefect worker start --pool {args.pool}")
    return 0


def cmd_sweep(args: argparse.Namespace, root: Path) -> int:
    from .sweep import DirtyWorkspace, parse_grid, sweep_commit

    try:
        points = parse_grid(args.grid)
        sweep_commit(root)  # refuse a dirty workspace before any server or worker starts
    except (ValueError, DirtyWorkspace) as exc:
        raise UsageError(str(exc)) from None
    workers = args.workers if args.workers is not None else (0 if args.pool else 2)
    if workers < 0 or (workers == 0 and not args.pool):
        raise UsageError("sweep: --workers must be at least 1 (or 0 with --pool, whose workers run elsewhere)")
    say(f"sweep of {len(points)} point(s), one DVC experiment each, each in a clone of its own; "
        f"{workers} local worker(s)" + (f" on work pool {args.pool!r}" if args.pool else ""))
    say_prefect(root)
    from .sweep import run_sweep

    done = run_sweep(root, args.grid, workers=workers, pool=args.pool, repo=args.repo, say=say)
    failed = sorted(name for name, state in done.items() if state != "Completed")
    if failed:
        say(f"sweep: {len(failed)} of {len(done)} point(s) did not complete: {', '.join(failed)} "
            "(their logs are in the Prefect UI)")
        return 1
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
    group.add_argument("--ids", help="CSV or Parquet file with a sample_key column (stable keys, e.g. image paths "
                                     "inside data.path) or a sample_id column (ids of the current preparation)")
    group.add_argument("--classes", help="comma-separated class labels, e.g. 3,7")
    group.add_argument("--fraction", type=float, help="a random fraction of the training set")
    forget.add_argument("--no-run", action="store_true", help="only record the request")
    forget.add_argument("--note", help="a note kept with the request in the ledger (e.g. the ticket number)")
    forget.add_argument("--exact", action="store_true",
                        help="retrain the whole lineage (teacher, upcycle, cache, student) without the samples")
    requests_parser(sub)
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
    sweep = sub.add_parser("sweep", help="run a grid of DVC experiments, each point a flow run on a work pool, "
                                          "in a clone of its own")
    sweep.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                       help="one axis of the grid; repeat for more")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="local workers to start, each running one point at a time (default 2; 0 with --pool)")
    sweep.add_argument("--pool", help="a Prefect work pool whose workers (on any host) run the points; "
                                      "default: a pool of this sweep's own, deleted at the end")
    sweep.add_argument("--repo", help="the git remote the workers clone and push experiments to "
                                      "(default: this project's path)")
    return parser


COMMANDS = {"run": cmd_run, "stage": cmd_stage, "forget": cmd_forget, "requests": cmd_requests, "report": cmd_report,
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
        said = one_line(exc)
        if said is None:
            raise
        code, line = said
        print(f"refinery: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
