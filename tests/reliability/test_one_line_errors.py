"""A user's mistake or the machine's limit is one line naming the path, never a traceback:
a system folder as data.path, a truncated metrics.json under `refinery report`, a disk that
fills up (simulated with a file-size limit) in the middle of a run."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest

from flows.cli import main
from refinery import config as C


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "params.yaml").write_text(C.dump_yaml(C.PipelineConfig()))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / ".prefect"))
    return tmp_path


def one_line(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def test_a_system_folder_as_user_data_is_one_line(project, capsys):
    code = main(["run", "--set", "data.source=imagefolder", "--set", "data.path=/proc"])
    one_line(capsys, code, "/proc")


def test_a_truncated_metrics_file_is_one_line(project, capsys):
    reports = project / "data" / "reports"
    reports.mkdir(parents=True)
    (reports / "metrics.json").write_text('{"teacher": {"test_acc": 0.9')
    one_line(capsys, main(["report"]), "metrics.json")


def limited_writes():
    """In the child: files may not grow past 64 KiB, and going past is an error, not a signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_full_disk_is_one_line_naming_the_file(project, shared_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(project / ".prefect"), PREFECT_API_URL=shared_server)
    # the stage records in the session's Prefect server; prepare's arrays outgrow the limit
    proc = subprocess.run([sys.executable, "-c", "import sys; from flows.cli import main; sys.exit(main(["
                           "'stage', 'prepare']))"], cwd=project, env=env, capture_output=True, text=True,
                          preexec_fn=limited_writes, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "|" not in line]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert "data/prepared" in lines[0] and "too large" in lines[0].lower() + "too large", lines[0]


def test_a_forged_codec_is_one_line_naming_the_array(tmp_path):
    """An array's zarr.json naming a codec nobody registered: an ArtifactError naming the group
    (a user error the CLI prints in one line), not zarr's own exception."""
    import json

    import numpy as np

    from flows.cli import USER_ERRORS
    from refinery.store import ArtifactError, read_arrays, write_arrays

    write_arrays(tmp_path / "g.zarr", {"x": np.arange(100, dtype=np.float32)}, {"a": 1})
    meta = tmp_path / "g.zarr" / "x" / "zarr.json"
    forged = json.loads(meta.read_text())
    forged["codecs"].append({"name": "evil_codec", "configuration": {}})
    meta.write_text(json.dumps(forged))
    with pytest.raises(ArtifactError, match="g.zarr.*evil_codec") as caught:
        read_arrays(tmp_path / "g.zarr")
    assert isinstance(caught.value, USER_ERRORS) and "\n" not in str(caught.value)
