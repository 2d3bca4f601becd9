"""Hostile or absurd configs stop at once with one line naming the file or key: YAML aliases
(a "billion laughs" file), duplicate keys, infinite or NaN floats, booleans where a number is
meant, and a forget ids file outside the project. Nothing is written and nothing large is built."""
from __future__ import annotations

import multiprocessing
import resource
import time
from types import UnionType
from typing import Callable, get_args, get_origin

import numpy as np
import pandas as pd
import pytest
from pydantic import BaseModel

from refinery import config as C


# --------------------------------------------------------------------------- a guard for the old behaviour
def _address_space() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def bounded(call: Callable[[], object], seconds: float = 10.0, memory: int = 512 << 20) -> tuple[str, str]:
    """Run `call` in a forked child that may grow by `memory` bytes of address space and run for
    `seconds`; return (name of what it raised, "returned" or "died"; its message). A runaway fails
    the test instead of eating the machine, a crash fails it instead of ending the session."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        limit = _address_space() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            result = ("returned", repr(call())[:200])
        except BaseException as exc:  # noqa: BLE001  reported to the parent, whatever it is
            result = (type(exc).__name__, str(exc)[:2000])
        send.send(result)

    process = ctx.Process(target=child)
    process.start()
    send.close()  # the child's copy stays open until it exits
    try:
        result = receive.recv() if receive.poll(seconds) else None
    except EOFError:  # it died without a word: a crash
        result = ("died", "")
    process.kill()
    process.join()
    if result is None:
        pytest.fail(f"still running after {seconds} s (killed)")
    return ("died", f"exit code {process.exitcode}") if result[0] == "died" else result


# --------------------------------------------------------------------------- aliases
def laughs(depth: int = 10, width: int = 9) -> str:
    """A flow sequence that expands to width**depth scalars through anchors and aliases."""
    text = "&a0 [" + ", ".join(["lol"] * width) + "]"
    for level in range(1, depth):
        text = f"&a{level} [{text}, " + ", ".join([f"*a{level - 1}"] * (width - 1)) + "]"
    return text


def test_alias_bomb_in_a_params_file_is_refused_fast(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(f"name: laughs\nseeds: {laughs()}\n")
    assert path.stat().st_size < 600
    started = time.perf_counter()
    raised, message = bounded(lambda: C.load(path), seconds=10)
    assert raised == "ConfigError", message
    assert time.perf_counter() - started < 1.0
    assert message.startswith(f"{path}: line 2: ") and "alias" in message and "\n" not in message


def test_alias_in_a_set_value_is_refused():
    with pytest.raises(C.ConfigError, match=r"^--set seeds: alias \*a0 refused"):
        C.parse_override(f"seeds={laughs()}")


def test_anchor_free_yaml_still_loads(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("name: plain\nteacher:\n  train: {epochs: 3, lr: 1e-3}\n")
    cfg = C.load(path)
    assert cfg.teacher.train.epochs == 3 and cfg.teacher.train.lr == 1e-3


# --------------------------------------------------------------------------- duplicate keys
DUPLICATES = {
    "two teacher blocks": ("teacher:\n  model:\n    dim: 32\nseed: 1\nteacher:\n  train:\n    epochs: 2\n",
                           "line 5: duplicate key 'teacher' (first at line 1)"),
    "nested key": ("teacher:\n  train:\n    lr: 0.1\n    epochs: 2\n    lr: 0.2\n",
                   "line 5: duplicate key 'lr' (first at line 3)"),
    "flow mapping": ("upcycle: {top_k: 1, num_experts: 4, top_k: 2}\n",
                     "line 1: duplicate key 'top_k' (first at line 1)"),
}


@pytest.mark.parametrize("text,problem", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_key_is_refused_naming_key_and_line(tmp_path, text, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(C.ConfigError) as caught:
        C.read_yaml(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_duplicate_key_in_a_set_value_is_refused():
    with pytest.raises(C.ConfigError, match="^--set teacher.train: duplicate key 'lr' \\(first at line 1\\)"):
        C.parse_override("teacher.train={lr: 0.1, lr: 0.2}")


# --------------------------------------------------------------------------- numbers
def number_fields(kind: type, model: type[BaseModel] = C.PipelineConfig, prefix: str = "") -> list[tuple[str, bool]]:
    """(dotted key, holds a list) for every field of the schema whose values are of `kind`
    (int or float), nested sections included."""
    found = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += number_fields(kind, annotation, f"{prefix}{name}.")
            continue
        choices = get_args(annotation) if get_origin(annotation) is UnionType else (annotation,)
        lists = [get_args(choice)[0] for choice in choices if get_origin(choice) is list]
        is_list = bool(lists)
        if kind in (lists or choices):
            found.append((f"{prefix}{name}", is_list))
    return found


FLOAT_FIELDS = number_fields(float)
INT_FIELDS = number_fields(int)


def test_the_walk_finds_the_audited_fields():
    floats = {key for key, _ in FLOAT_FIELDS}
    assert {"upcycle.capacity_factor", "upcycle.aux_coef", "teacher.train.grad_clip", "unlearn.ssd.lam",
            "unlearn.finetune.lr_grid"} <= floats
    assert {"seed", "seeds", "teacher.train.epochs", "forget.classes", "unlearn.ssd.batch_size"} <= {
        key for key, _ in INT_FIELDS}


def refused(key: str, yaml_value: str) -> str:
    """The ConfigError line for `--set key=yaml_value` on an otherwise default config."""
    with pytest.raises(C.ConfigError) as caught:
        C.validate(C.apply_overrides({}, [f"{key}={yaml_value}"]), "params.yaml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"params.yaml: {key}: ") or message.startswith(f"params.yaml: {key}.0: "), message
    return message


@pytest.mark.parametrize("key,is_list", FLOAT_FIELDS, ids=[k for k, _ in FLOAT_FIELDS])
def test_every_float_field_refuses_inf_and_nan(key, is_list):
    for value in ("inf", "-inf", "nan", ".inf", "-.inf", ".nan"):
        assert "finite number" in refused(key, f"[{value}]" if is_list else value)


@pytest.mark.parametrize("key,is_list", FLOAT_FIELDS + INT_FIELDS, ids=[k for k, _ in FLOAT_FIELDS + INT_FIELDS])
def test_every_number_field_refuses_booleans(key, is_list):
    for value in ("true", "false"):
        assert "not a number" in refused(key, f"[{value}, {value}]" if is_list else value)


def test_numbers_still_parse():
    overrides = ["seed=1", "teacher.train.epochs=3", "teacher.train.lr=1e-3", "upcycle.capacity_factor=1.25",
                 "teacher.train.channels_last=true", "unlearn.finetune.lr_grid=[1e-4, 0.001]", "seeds=[0, 1]",
                 "upcycle.aux_coef=0", "teacher.train.compile=false"]
    cfg = C.validate(C.apply_overrides({}, overrides))
    assert (cfg.seed, cfg.teacher.train.epochs, cfg.teacher.train.lr) == (1, 3, 1e-3)
    assert cfg.upcycle.capacity_factor == 1.25 and cfg.upcycle.aux_coef == 0.0 and cfg.seeds == [0, 1]
    assert cfg.teacher.train.channels_last is True and cfg.teacher.train.compile is False
    assert cfg.unlearn.finetune.lr_grid == [1e-4, 1e-3]


# --------------------------------------------------------------------------- forget --ids
@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "data" / "prepared").mkdir(parents=True)
    (root / "params.yaml").write_text(C.dump_yaml(C.PipelineConfig()))
    index = pd.DataFrame({"sample_id": np.arange(20), "split": ["train"] * 16 + ["test"] * 4,
                          "label": np.arange(20) % 2, "forget": np.zeros(20, dtype=bool)})
    index.to_parquet(root / "data" / "prepared" / "index.parquet")
    return root


@pytest.mark.parametrize("ids_file", ["../ids.csv", "requests/../../ids.csv", "/tmp/ids.csv"])
def test_params_naming_an_ids_file_outside_the_project_are_refused(ids_file):
    message = refused("forget.ids_file", ids_file)
    assert "inside the project" in message
