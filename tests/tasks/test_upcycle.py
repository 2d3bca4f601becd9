"""The upcycle stage's recipe comparison: which variants it trains, and the rows it reports."""
from __future__ import annotations

import pytest

from refinery.metrics.cost import active_params
from refinery.train import accuracy
from tasks.upcycle import compare_recipes, recipe_variants
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
