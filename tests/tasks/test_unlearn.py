"""The unlearn stage in a throwaway workspace: prepared digits, a tiny teacher written directly
(no teacher stage run), then `unlearn` with retrain and fine-tuning. Checks the per-sample
margins it writes for KLoM and the relearning check it adds to each model's row."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from refinery.data import load_prepared
from refinery.metrics.klom import margins
from refinery.store import read_json, read_table
from refinery.train import predict_logits
from tasks.common import Workspace
from tasks.models import load_model
from tasks import unlearn as stage
from tasks.unlearn import relearn_rows, training_split, unlearn
from tests.tasks.workspace import save_untrained, stage_workspace

TINY = {"arch": "mlp", "dim": 16, "depth": 1}
MODELS = ("original", "retrain", "finetune")
RELEARN = ("relearn_forget_acc_before", "relearn_forget_acc_after", "relearn_returned", "relearn_excess_returned")


def run_stage(root, relearn_epochs: int) -> Workspace:
    raw = {"name": "t", "device": "cpu",
           "forget": {"mode": "fraction", "fraction": 0.1},  # random samples: retrain's forget acc moves on relearning
           "teacher": {"model": TINY, "train": {"epochs": 2, "batch_size": 128}},
           "unlearn": {"target": "teacher", "methods": ["retrain", "finetune"], "finetune": {"epochs": 1},
                       "audit": False, "select_lr": False, "relearn_epochs": relearn_epochs}}
    ws = stage_workspace(root, raw)
    save_untrained(ws, "teacher", TINY)
    unlearn(ws)
    return ws


@pytest.fixture(scope="module")
def relearned(tmp_path_factory) -> Workspace:
    return run_stage(tmp_path_factory.mktemp("unlearn"), relearn_epochs=1)


def splits(ws: Workspace) -> dict:
    """The forget, retain and test samples rebuilt from prepare's outputs, not from the stage."""
    data = load_prepared(ws.stage_dir("prepare") / "arrays.zarr", forgotten=True)
    forget_ids = read_table(ws.stage_dir("prepare") / "forget.parquet")["sample_id"].to_numpy()
    train = training_split(data, forget_ids)
    return {"forget": train.only(forget_ids), "retain": train.without(forget_ids), "test": data.test}


def test_margins_one_row_per_model_and_sample_of_each_split(relearned):
    table = read_table(relearned.stage_dir("unlearn") / "margins.parquet")
    assert list(table.columns) == ["model", "split", "sample_id", "margin"]
    assert table["sample_id"].dtype == np.int64 and table["margin"].dtype == np.float64
    assert np.isfinite(table["margin"]).all()
    expected = splits(relearned)
    assert len(table) == len(MODELS) * sum(len(d) for d in expected.values())
    for (model, split), rows in table.groupby(["model", "split"]):
        assert model in MODELS
        assert sorted(rows["sample_id"]) == sorted(expected[split].ids.tolist()), (model, split)
    assert set(table["model"]) == set(MODELS) and set(table["split"]) == set(expected)


def test_margins_are_the_saved_retrain_models_on_the_forget_set(relearned):
    table = read_table(relearned.stage_dir("unlearn") / "margins.parquet")
    forget = splits(relearned)["forget"]
    model, _ = load_model(relearned.stage_dir("unlearn") / "models" / "retrain.zarr")
    want = pd.Series(margins(predict_logits(model, forget.x), forget.y), index=forget.ids.numpy())
    got = table[(table["model"] == "retrain") & (table["split"] == "forget")].set_index("sample_id")["margin"]
    np.testing.assert_allclose(got.loc[want.index].to_numpy(), want.to_numpy(), rtol=1e-6, atol=1e-6)
    # and the original's margins are another model's, not retrain's copied
    original = table[(table["model"] == "original") & (table["split"] == "forget")].set_index("sample_id")["margin"]
    assert not np.allclose(original.loc[want.index].to_numpy(), want.to_numpy())


def test_relearn_fields_in_every_row_against_retrain(relearned):
    metrics = read_json(relearned.stage_dir("unlearn") / "metrics.json")
    gold = metrics["retrain"]
    assert gold["relearn_excess_returned"] == 0.0
    assert gold["relearn_returned"] != 0.0  # else a missing subtraction would pass unnoticed
    for name in MODELS:
        row = metrics[name]
        assert set(RELEARN) <= set(row), name
        # percent, as UA in the same row: acc(D_f) before relearning is 100 - UA
        assert row["relearn_forget_acc_before"] == pytest.approx(100.0 - row["UA"], abs=1e-4)
        assert 0.0 <= row["relearn_forget_acc_after"] <= 100.0
        after, before = row["relearn_forget_acc_after"], row["relearn_forget_acc_before"]
        assert row["relearn_returned"] == pytest.approx(after - before)
        assert row["relearn_excess_returned"] == pytest.approx(row["relearn_returned"] - gold["relearn_returned"])


def test_relearn_epochs_zero_leaves_the_fields_out(tmp_path):
    ws = run_stage(tmp_path, relearn_epochs=0)
    metrics = read_json(ws.stage_dir("unlearn") / "metrics.json")
    for name in MODELS:
        assert not set(RELEARN) & set(metrics[name]), name
    assert (ws.stage_dir("unlearn") / "margins.parquet").exists()


def test_relearn_runs_once_per_model_with_the_same_recipe_seed_and_data(monkeypatch):
    calls = []

    def fake(model, retain, forget, recipe, seed, epochs=3, **options):
        calls.append((model, retain, forget, recipe, seed, epochs, options))
        before = {"original": 0.9, "retrain": 0.5, "finetune": 0.6}[model]
        return {"forget_acc_before": before, "forget_acc_after": 0.95, "returned": 0.95 - before}

    monkeypatch.setattr(stage, "relearn_on_retain", fake)
    ctx = SimpleNamespace(retain="D_r", forget="D_f", train_cfg="recipe", seed=99)
    rows = relearn_rows({name: name for name in MODELS}, ctx, seed=7, epochs=4)
    assert sorted(c[0] for c in calls) == sorted(MODELS)  # retrain's relearning once, not once per method
    assert {c[1:6] for c in calls} == {("D_r", "D_f", "recipe", 7, 4)} and not any(c[6] for c in calls)
    assert rows["retrain"]["relearn_excess_returned"] == 0.0
    assert rows["finetune"]["relearn_excess_returned"] == pytest.approx(100 * (0.35 - 0.45))
    assert rows["original"]["relearn_forget_acc_before"] == pytest.approx(90.0)
