"""The whole pipeline over a user's CIFAR-format directory (a small one the test writes)."""
from tests.project import copy_project, metrics, run
from tests.refinery.data.test_cifar import write_cifar10


def test_pipeline_over_a_cifar_directory(tmp_path):
    project = copy_project(tmp_path / "project")
    cifar = write_cifar10(tmp_path / "cifar-10-batches-py", n=40, labels=[i % 10 for i in range(40)])
    run(project, "refinery", "run", "--pipeline", "smoke", "--set", "data.source=cifar10",
        "--set", f"data.path={cifar}", "--set", "data.split=published")
    m = metrics(project)
    assert 0 <= m["teacher"]["test_acc"] <= 1 and m["unlearn"]["retrain"]["gap"] == 0
    assert "up to date" in run(project, "dvc", "status").stdout
    assert "up to date" in run(project, "refinery", "run").stdout
    # New labels in the user's files: `refinery run` sees them and prepares the data again.
    write_cifar10(cifar, n=40, labels=[(i * 7) % 10 for i in range(40)])
    rerun = run(project, "refinery", "run").stdout
    ran = next(line for line in rerun.splitlines() if "done in" in line).split("ran: ")[1].split(";")[0]
    assert {"prepare", "teacher"} <= set(ran.split(", ")), rerun
