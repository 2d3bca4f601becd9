"""`refinery run`: write the active config to params.yaml and run every stage DVC says is out of
date, in one Prefect flow, holding the workspace lock throughout; and how commands speak."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .errors import UsageError, quiet_one_line_errors

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
