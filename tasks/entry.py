"""The Prefect entry point of a stage: `stage_task(name)` is a task that runs the stage's function.

Stage failures are deterministic (bad data, bad config, divergence), so stage tasks do not
retry; I/O helpers may.
"""
from __future__ import annotations

import importlib
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from .common import Workspace
from .gpu import gpu_slot
from .stages import GPU_STAGES, parse_dvc_name


def stage_function(name: str) -> Callable[[Workspace], None]:
    """The entry point of stage `name` (a dvc.yaml name: `teacher-seed3` runs `teacher`), importing
    only that stage's module."""
    base, _ = parse_dvc_name(name)
    return getattr(importlib.import_module(f"tasks.{base}"), base)


def run_stage(name: str, root: str) -> str:
    """Run the stage's code in the current task run (a task of its own or the pipeline's); a
    group member (`teacher-seed3`) runs in the workspace of its seed."""
    fn = stage_function(name)
    base, seed = parse_dvc_name(name)
    ws = Workspace(Path(root), seed)
    torch.set_num_threads(ws.config().threads)  # the config's, not the machine's: results depend on it
    # A device-using stage holds a `gpu` slot and one device (tasks/gpu.py); no-op on a CPU box.
    with gpu_slot(Path(root)) if base in GPU_STAGES else nullcontext():
        fn(ws)
    return name


def stage_task(name: str, body: Callable | None = None):
    """The task run of stage `name`: named after it, tagged `stage`, its stage name, its seed
    (and `gpu`), never retried or cached. `body(root)` defaults to running the stage's code; the
    pipeline passes one that first decides, as DVC would, whether to run, restore or skip it."""
    def run(root: str) -> str:
        return run_stage(name, root)

    if body is None:
        stage_function(name)  # import the stage's module now: an import error is not a task failure

    base, seed = parse_dvc_name(name)
    tags = ["stage", base] + ([f"seed-{seed}"] if seed is not None else []) + (["gpu"] if base in GPU_STAGES else [])
    return task(body or run, name=name, tags=tags, retries=0, cache_policy=NO_CACHE, task_run_name=name)
