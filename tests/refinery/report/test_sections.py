"""Report content: every section, provenance on every number, and plain verdicts."""
from __future__ import annotations

from refinery.report import build_report, compare_accuracy, pareto_models, render_markdown, summary_rows


def test_compare_accuracy_says_plainly_when_a_method_does_not_win():
    assert "does not beat" in compare_accuracy("KD", 0.80, "scratch", 0.81, 1000)
    assert "does not beat" in compare_accuracy("KD", 0.80, "scratch", 0.80, 1000)
    noise = compare_accuracy("KD", 0.805, "scratch", 0.80, 1000)
    assert "not a demonstrated improvement" in noise and "beats" not in noise.replace("not a", "")
    win = compare_accuracy("KD", 0.90, "scratch", 0.80, 1000)
    assert "beats scratch" in win and "2 SE" in win
    assert "cannot be compared" in compare_accuracy("KD", float("nan"), "scratch", 0.8, 10)


def test_pareto_models():
    models = {"big": dict(test_acc=0.9, flops_per_sample=10.0), "small": dict(test_acc=0.8, flops_per_sample=1.0),
              "bad": dict(test_acc=0.7, flops_per_sample=5.0), "twin": dict(test_acc=0.8, flops_per_sample=1.0)}
    assert pareto_models(models) == ["big", "small", "twin"]


def test_markdown_has_every_section_and_provenance(inputs):
    text = render_markdown(build_report(inputs))
    for title in ("## Data", "## Teacher", "## Upcycling", "## Distillation", "## Unlearning audit", "## Cost"):
        assert title in text
    for stage in ("prepare", "teacher", "upcycle", "distill", "unlearn", "evaluate"):
        assert f"hash-{stage}" in text
    assert text.count("git `abc1234`") >= 6
    assert "config `c0ffee`" in text


def test_markdown_verdicts_follow_the_numbers(inputs):
    text = render_markdown(build_report(inputs))
    # student 0.85 vs scratch 0.86: KD lost
    assert "The KD student (0.8500) vs the scratch student (0.8600): -1.00 points. The KD student does not beat" in text
    # MoE 0.91 vs teacher 0.90 on 400 samples: inside 2 SE
    assert "not a demonstrated improvement over the dense teacher" in text
    # ssd's gap (3.5) is below doing nothing (8.0)
    assert "`ssd`: gap to retrain 3.50; it beats doing nothing" in text
    inputs.metrics["unlearn"]["ssd"]["gap"] = 9.0
    assert "it does not beat doing nothing" in render_markdown(build_report(inputs))


def test_summary_rows_carry_the_producing_stages_config_hash(inputs):
    rows = {r["model"]: r for r in summary_rows(inputs)}
    assert rows["student"]["config"] == "hash-distill"
    assert rows["unlearn_ssd"]["config"] == "hash-unlearn"
    assert rows["upcycle"]["config"] == "hash-upcycle"


def test_unlearning_table_is_relative_to_retrain(inputs):
    text = render_markdown(build_report(inputs))
    line = next(ln for ln in text.splitlines() if ln.startswith("| ssd |"))
    assert "| -2.00 | -5.00 | -4.00 | -5.00 |" in line  # dUA dRA dTA dMIA


def test_report_without_retrain_says_so(inputs):
    del inputs.metrics["unlearn"]["retrain"]
    assert "No retrain baseline was run" in render_markdown(build_report(inputs))


def test_recipe_table_and_verdict_appear_only_with_a_comparison(inputs):
    from dataclasses import replace

    assert "upcycle.compare" not in render_markdown(build_report(inputs))
    recipes = [dict(model="dense teacher", test_acc=0.90, active_params=100, flops_per_sample=1000.0),
               dict(model="sparse (configured)", test_acc=0.89, active_params=150, flops_per_sample=1500.0),
               dict(model="dmu", test_acc=0.88, active_params=150, flops_per_sample=1500.0),
               dict(model="mola increasing [2, 6]", test_acc=0.895, active_params=120, flops_per_sample=1200.0)]
    text = render_markdown(build_report(replace(inputs, recipes=recipes)))
    assert "upcycle.compare" in text and "mola increasing [2, 6]" in text
    assert "The best recipe (mola increasing [2, 6]) (0.8950) vs the dense teacher (0.9000)" in text
    assert "does not beat the dense teacher" in text


def test_title_names_the_data_set_and_the_preset(inputs):
    inputs.provenance["dataset"] = "cifar10 from data/cifar-10-batches-py"
    report = build_report(inputs)
    assert report.title == "refinery report: cifar10 from data/cifar-10-batches-py (synthetic preset)"
    assert render_markdown(report).startswith("# refinery report: cifar10 from data/cifar-10-batches-py")
