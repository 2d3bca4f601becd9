"""The upcycle stage's recipe comparison: which variants it trains, and the rows it reports; the
stage itself in a throwaway workspace, with its dense baseline trained for the same extra steps."""
from __future__ import annotations

import pytest
import torch

from refinery.data import load_prepared
from refinery.metrics.cost import active_params
from refinery.store import read_json, read_table
from refinery.train import accuracy
from tasks.models import load_model
from tasks.upcycle import compare_recipes, recipe_variants, upcycle
from tests.tasks.workspace import save_untrained, stage_workspace
from tests.refinery.upcycle.conftest import digits, small_config, teacher  # noqa: F401 - fixtures


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_variants_are_every_recipe_and_three_mola_shapes_of_equal_total(depth):
    cfg = small_config(recipe="sparse")
    variants = dict(recipe_variants(cfg, depth=depth))
    assert [v.recipe for v in variants.values()] == ["sparse", "dmu", "moepp", "phatgoose", "mola", "mola", "mola"]
    shapes = {name.split()[1]: v.mola_experts for name, v in variants.items() if v.recipe == "mola"}
    assert shapes["increasing"] == sorted(shapes["increasing"])
    assert depth == 1 or shapes["increasing"][0] < shapes["increasing"][-1]
    assert shapes["decreasing"] == shapes["increasing"][::-1]
    assert len(set(shapes["uniform"])) == 1
    assert sum(shapes["increasing"]) == sum(shapes["uniform"]) == sum(shapes["decreasing"])
    assert min(min(s) for s in shapes.values()) >= cfg.top_k


def test_without_compare_only_the_dense_teacher_and_the_configured_recipe_are_rows(digits, teacher):  # noqa: F811
    dense, arch = teacher
    table = compare_recipes(small_config(recipe="sparse"), digits, dense, arch, 0, trained=dense)
    assert list(table["model"]) == ["dense teacher", "sparse (configured)"]
    assert table["test_acc"][0] == accuracy(dense, digits.test)
    assert table["active_params"][0] == active_params(dense)


def test_compare_trains_every_variant_from_the_same_teacher(digits, teacher):  # noqa: F811
    dense, arch = teacher
    table = compare_recipes(small_config(recipe="sparse", compare=True), digits, dense, arch, 0, trained=dense)
    assert len(table) == 2 + 7
    assert table["model"].str.startswith("mola").sum() == 3
    assert table["test_acc"].between(0, 1).all() and (table["flops_per_sample"] > 0).all()
    by_name = table.set_index("model")
    # the configured recipe is reused, not retrained (here it was handed the dense model itself)
    assert by_name.loc["sparse", "active_params"] == by_name.loc["sparse (configured)", "active_params"]
    assert by_name.loc["dmu", "active_params"] > by_name.loc["dense teacher", "active_params"]  # top-2 experts


def test_the_continued_dense_teacher_is_a_third_row_after_the_fixed_two(digits, teacher):  # noqa: F811
    dense, arch = teacher
    table = compare_recipes(small_config(recipe="sparse"), digits, dense, arch, 0, trained=dense, continued=dense)
    assert list(table["model"]) == ["dense teacher", "sparse (configured)", "dense teacher, continued"]


TINY_CCT = {"arch": "cct", "dim": 16, "depth": 1, "heads": 2, "conv_channels": 4}


def test_stage_trains_the_dense_teacher_for_the_moes_extra_steps(tmp_path):
    raw = {"name": "t", "device": "cpu", "teacher": {"model": TINY_CCT},
           "upcycle": {"num_experts": 2, "top_k": 1, "train": {"epochs": 2, "batch_size": 64, "lr": 1e-2}}}
    ws = stage_workspace(tmp_path, raw)
    arch = save_untrained(ws, "teacher", TINY_CCT)
    upcycle(ws)
    out = ws.stage_dir("upcycle")
    metrics = read_json(out / "metrics.json")
    continued, continued_arch = load_model(out / "dense.zarr")
    start, _ = load_model(ws.stage_dir("teacher") / "model.zarr")
    assert continued_arch == arch  # dense, no experts
    assert any(not torch.equal(a, b) for a, b in zip(continued.state_dict().values(), start.state_dict().values()))
    test = load_prepared(ws.stage_dir("prepare") / "arrays.zarr").test
    assert metrics["dense_continued_test_acc"] == accuracy(continued, test)
    assert metrics["dense_test_acc"] == accuracy(start, test)
    recipes = read_table(out / "recipes.parquet")
    assert list(recipes["model"])[:3] == ["dense teacher", "sparse (configured)", "dense teacher, continued"]
    assert recipes["test_acc"][2] == metrics["dense_continued_test_acc"]
    history = read_table(out / "history.parquet")
    epochs = history.groupby("run").size()
    assert epochs["dense (continued)"] == epochs["upcycle"] == 2  # equal training steps
    assert not ws.resume_path("upcycle-dense").exists()
