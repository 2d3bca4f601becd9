"""The Prefect entry point of a stage: `stage_task(name)` wraps the stage's function as a task.

Stage failures are deterministic (bad data, bad config, divergence), so stage tasks do not
retry; I/O helpers may.
"""
from __future__ import annotations

import importlib
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from .common import Workspace
from .gpu import gpu_slot
from .stages import GPU_STAGES, stage


def stage_function(name: str) -> Callable[[Workspace], None]:
    """The stage's entry point, importing only that stage's module."""
    return getattr(importlib.import_module(stage(name).module), name)


def stage_task(name: str):
    fn = stage_function(name)

    def run_stage(root: str) -> str:
        # A device-using stage holds a `gpu` slot and one device (tasks/gpu.py); no-op on a CPU box.
        with gpu_slot(Path(root)) if name in GPU_STAGES else nullcontext():
            fn(Workspace(Path(root)))
        return name

    tags = ["stage", name] + (["gpu"] if name in GPU_STAGES else [])
    return task(run_stage, name=name, tags=tags, retries=0, cache_policy=NO_CACHE, task_run_name=f"{name}")
