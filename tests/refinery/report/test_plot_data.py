"""The DVC plot CSVs: names, columns and contents, and the atomic directory swap."""
from __future__ import annotations

import csv
import io

from refinery.report import plot_files, write_plot_data
from refinery.report.plot_data import (expert_load_csv, frontier_csv, history_csvs, reliability_csvs, slug,
                                       unlearning_csv)


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_slug_makes_file_names_safe():
    assert slug("student (kd)") == "student-kd"
    assert slug("unlearn_ssd") == "unlearn-ssd"
    assert slug("///") == "unnamed"


def test_history_has_one_csv_per_stage_and_run(inputs):
    files = history_csvs(inputs.histories)
    assert sorted(files) == ["history/distill-scratch.csv", "history/distill-student.csv",
                             "history/teacher.csv", "history/upcycle.csv"]
    teacher = rows(files["history/teacher.csv"])
    assert [r["epoch"] for r in teacher] == ["1", "2", "3"]
    assert set(teacher[0]) == {"epoch", "loss", "val_acc", "lr", "seconds", "run"}
    assert float(teacher[-1]["val_acc"]) == inputs.histories["teacher"][-1]["val_acc"]
    assert {r["run"] for r in rows(files["history/distill-student.csv"])} == {"student (kd)"}


def test_history_files_are_named_by_role_not_by_loss(inputs):
    """`dvc plots diff` lines plots up by file: a kd run and a dkd run must write the same names."""
    def renamed(loss: str) -> dict:
        return {stage: [dict(r, run=r["run"].replace("(kd)", f"({loss})")) for r in rows_]
                for stage, rows_ in inputs.histories.items()}
    assert sorted(history_csvs(renamed("kd"))) == sorted(history_csvs(renamed("dkd")))
    assert "history/distill-random-teacher.csv" in history_csvs({"distill": [{"run": "random_teacher (kd)"}]})
    # two runs of one role stay apart rather than sharing a file
    both = history_csvs({"distill": [{"run": "student (kd)", "epoch": 1}, {"run": "student (dkd)", "epoch": 1}]})
    assert len(both) == 2


def test_reliability_keeps_only_non_empty_bins(inputs):
    files = reliability_csvs(inputs.reliability)
    assert sorted(files) == sorted(f"reliability/{slug(m)}.csv" for m in inputs.models)
    table = rows(files["reliability/teacher.csv"])
    assert all(int(r["count"]) > 0 for r in table)
    assert sum(int(r["count"]) for r in table) == 200  # every test sample lands in some bin
    assert all(0.0 <= float(r["confidence"]) <= 1.0 and 0.0 <= float(r["accuracy"]) <= 1.0 for r in table)


def test_frontier_unlearning_and_expert_load(inputs):
    frontier = rows(frontier_csv(inputs.models))
    assert [r["model"] for r in frontier] == list(inputs.models)
    assert float(frontier[0]["test_acc"]) == inputs.models["teacher"]["test_acc"]
    assert float(frontier[1]["flops_per_sample"]) == inputs.models["upcycle"]["flops_per_sample"]
    unlearn = {r["method"]: r for r in rows(unlearning_csv(inputs.metrics))}
    assert set(unlearn) == {"retrain", "original", "ssd"}
    assert float(unlearn["ssd"]["UA"]) == 10.0 and float(unlearn["retrain"]["gap"]) == 0.0
    experts = rows(expert_load_csv(inputs.experts))
    assert [r["expert"] for r in experts[:4]] == ["L0 E0", "L0 E1", "L0 E2", "L0 E3"]
    assert len(experts) == 8 and float(experts[1]["load"]) == 0.4


def test_unlearning_csv_skips_non_method_entries():
    assert rows(unlearning_csv({"unlearn": {"ssd": {"UA": 1.0}, "forget_size": 12}})) == [
        {"method": "ssd", "UA": "1.0", "RA": "", "TA": "", "MIA": "", "gap": "", "seconds": ""}]


def test_write_plot_data_replaces_stale_files(tmp_path, inputs):
    dest = tmp_path / "plots"
    (dest / "reliability").mkdir(parents=True)
    (dest / "reliability" / "gone-model.csv").write_text("stale\n")
    written = write_plot_data(dest, inputs)
    assert not (dest / "reliability" / "gone-model.csv").exists()
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.csv")) == sorted(plot_files(inputs))
    assert all(p.exists() for p in written)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_write_plot_data_without_experts_or_histories(tmp_path, inputs):
    inputs.experts, inputs.histories = [], {}
    write_plot_data(tmp_path / "plots", inputs)
    assert not (tmp_path / "plots" / "expert_load.csv").exists()
    assert (tmp_path / "plots" / "frontier.csv").exists()
