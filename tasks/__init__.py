"""One module per stage: read inputs from the store, call refinery, write outputs.

`stage_task(name)` is the Prefect entry point for a stage. Stage failures are deterministic
(bad data, bad config, divergence), so stage tasks do not retry; I/O helpers may.
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

STAGE_NAMES = ("prepare", "teacher", "upcycle", "distill", "unlearn", "evaluate")
GPU_STAGES = {"teacher", "upcycle", "distill", "unlearn"}


def stage_function(name: str) -> Callable[[Workspace], None]:
    """The stage's entry point, importing only that stage's module."""
    if name not in STAGE_NAMES:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    return getattr(importlib.import_module(f"tasks.{name}"), name)


def stage_task(name: str):
    fn = stage_function(name)

    def run_stage(root: str) -> str:
        # A device-using stage holds a `gpu` slot and one device (tasks/gpu.py); no-op on a CPU box.
        with gpu_slot(Path(root)) if name in GPU_STAGES else nullcontext():
            fn(Workspace(Path(root)))
        return name

    tags = ["stage", name] + (["gpu"] if name in GPU_STAGES else [])
    return task(run_stage, name=name, tags=tags, retries=0, cache_policy=NO_CACHE,
                task_run_name=f"{name}")
