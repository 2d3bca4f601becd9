"""kill -9 the teacher mid-training (a real process, a real signal); the next `refinery run`
resumes from the last epoch checkpoint and ends bit-identical to an uninterrupted run."""
import json
import os
import shutil
import signal
import subprocess
import time

from refinery.resolve import resolve_config, write_params
from tasks.stages import stage
from tests.project import API_URL, BIN, copy_project, run

EPOCHS = 8


def resume_step(project) -> int:
    meta = project / ".refinery" / "resume" / "teacher.zarr" / "zarr.json"
    try:
        return json.loads(meta.read_text())["attributes"]["step"]
    except (OSError, ValueError, KeyError):
        return 0


def kill_during_teacher(project) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_API_URL"] = API_URL["url"]
    proc = subprocess.Popen([str(BIN / "refinery"), "run"], cwd=project, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while resume_step(project) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= resume_step(project) < EPOCHS, "the teacher was not caught mid-training"


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, shared_server):
    project = copy_project(tmp_path / "crashed")
    write_params(project, resolve_config(project, "smoke", [f"teacher.train.epochs={EPOCHS}"]))
    kill_during_teacher(project)
    killed_at = resume_step(project)
    # Nothing half-written is visible where the artifact lives.
    assert not (project / "data" / "teacher" / "model.zarr").exists()
    resumed = run(project, "refinery", "run")
    assert f"resumed from the checkpoint of epoch {killed_at}" in resumed.stdout + resumed.stderr
    assert "up to date" in run(project, "dvc", "status").stdout

    clean = copy_project(tmp_path / "clean")
    shutil.copy(project / "params.yaml", clean / "params.yaml")
    shutil.copytree(project / "data" / "prepared", clean / "data" / "prepared", dirs_exist_ok=True)
    run(clean, "refinery", "stage", "teacher")  # the same stage, never interrupted

    def outputs(root):
        recorded = json.loads((root / stage("teacher").manifest).read_text())["outputs"]
        return {k: v for k, v in recorded.items() if k in stage("teacher").reproducible_outs}

    def accuracy(root):
        return json.loads((root / "data" / "teacher" / "metrics.json").read_text())["test_acc"]

    assert outputs(project) == outputs(clean)
    assert accuracy(project) == accuracy(clean)
