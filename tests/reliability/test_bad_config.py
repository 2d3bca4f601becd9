"""Every malformed config stops with one line naming the key: no traceback, nothing written."""
import shutil

import pytest

from flows.cli import main
from tests.project import PROJECT

CASES = [
    ("teacher.trian.lr=0.1", "teacher.trian"),                  # unknown key
    ("nonsense=1", "nonsense"),                                 # unknown top-level key
    ("teacher.train.epochs=many", "teacher.train.epochs"),      # wrong type
    ("teacher.train.epochs=1.5", "teacher.train.epochs"),       # float for int
    ("teacher.train.lr=-0.1", "teacher.train.lr"),              # negative LR
    ("teacher.train.lr=0", "teacher.train.lr"),                 # zero LR
    ("teacher.train.batch_size=0", "teacher.train.batch_size"),
    ("teacher.train.schedule=triangle", "teacher.train.schedule"),
    ("teacher.model.arch=vit", "teacher.model.arch"),           # unknown backbone
    ("teacher.model.dropout=1.5", "teacher.model.dropout"),
    ("upcycle.top_k=9", "upcycle"),                             # k > E
    ("upcycle.num_experts=0", "upcycle.num_experts"),
    ("upcycle.recipe=magic", "upcycle.recipe"),                 # unknown method
    ("distill.loss=telepathy", "distill.loss"),                 # unknown loss
    ("distill.alpha=2", "distill.alpha"),
    ("unlearn.methods=[retrain, wishful]", "unlearn.methods"),  # unknown unlearning method
    ("unlearn.methods=[retrain, ssd, ssd]", "unlearn.methods"),  # duplicates
    ("unlearn.methods=[ssd]", "unlearn.methods"),               # no gold standard
    ("forget.mode=fraction", None),                             # valid on its own: control case
    ("forget.fraction=0", "forget.fraction"),                   # forget fraction 0
    ("forget.fraction=1", "forget.fraction"),                   # forget fraction 1
    ("forget.mode=ids", "forget"),                              # ids mode without a file
    ("data.source=imagenet", "data.source"),
    ("data.test_fraction=0.9", "data.test_fraction"),
    ("seed=-1", "seed"),
    ("seed=[0, 1, 1]", "seed"),                                 # a seed list with duplicates is no seed
    ("device=tpu", "device"),
    ("evaluate.ece_bins=1", "evaluate.ece_bins"),
]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    shutil.copytree(PROJECT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    for key in ("PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_SERVER_API_HOST",
                "PREFECT_LOGGING_EXTRA_LOGGERS", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"):
        monkeypatch.setenv(key, str(tmp_path / ".prefect") if key == "PREFECT_HOME" else "x")
    return tmp_path


@pytest.mark.parametrize("override,key", [c for c in CASES if c[1]])
def test_bad_override_is_one_line_naming_the_key(workspace, capsys, override, key):
    before = (workspace / "params.yaml").read_text()
    code = main(["run", "--pipeline", "smoke", "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("refinery: error: ") and "\n" not in err and "Traceback" not in err
    assert f" {key}" in err or f": {key}" in err, err
    assert (workspace / "params.yaml").read_text() == before
    assert not (workspace / "data").exists()


def test_at_least_twenty_cases():
    assert len([c for c in CASES if c[1]]) >= 20


def test_bad_params_file_and_unknown_preset(workspace, capsys):
    (workspace / "params.yaml").write_text("teacher: [1, 2\n")
    assert main(["run"]) == 2
    assert "params.yaml: not valid YAML" in capsys.readouterr().err
    assert main(["run", "--pipeline", "nope"]) == 2
    assert "unknown pipeline 'nope'" in capsys.readouterr().err
