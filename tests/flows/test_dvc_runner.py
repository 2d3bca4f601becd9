"""The in-process runner decides and records stages exactly as `dvc repro` does (real DVC,
a two-stage toy pipeline, no Prefect)."""
import subprocess
import sys
from pathlib import Path

import pytest

from flows.dvc_runner import WorkspaceBusy, changed_stages, locked_repo, reproduce

DVC = str(Path(sys.executable).parent / "dvc")
PIPELINE = """
stages:
  first:
    cmd: echo first
    params: [a]
    outs: [out/first.txt]
  second:
    cmd: echo second
    deps: [out/first.txt]
    params: [b]
    outs: [out/second.txt]
"""


@pytest.fixture
def toy(tmp_path):
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    (tmp_path / "params.yaml").write_text("a: 1\nb: 1\n")
    return tmp_path


def runner(root: Path, log: list):
    def run_stage(name: str) -> None:
        log.append(name)
        params = (root / "params.yaml").read_text()
        (root / "out").mkdir(exist_ok=True)
        upstream = (root / "out" / "first.txt").read_text() if name == "second" else ""
        (root / "out" / f"{name}.txt").write_text(params.split("\n")[0 if name == "first" else 1] + upstream)
    return run_stage


def dvc(root, *args):
    return subprocess.run([DVC, *args], cwd=root, capture_output=True, text=True, check=True).stdout


def test_runs_in_order_then_dvc_agrees(toy):
    log = []
    assert changed_stages(toy) == ["first", "second"]
    reproduce(toy, runner(toy, log))
    assert log == ["first", "second"]
    assert "up to date" in dvc(toy, "status")
    assert "Running stage" not in dvc(toy, "repro")
    assert changed_stages(toy) == []


def test_param_change_reruns_only_downstream_of_it(toy):
    reproduce(toy, runner(toy, []))
    (toy / "params.yaml").write_text("a: 1\nb: 2\n")
    log = []
    assert changed_stages(toy) == ["second"]
    outcomes = reproduce(toy, runner(toy, log))
    assert log == ["second"] and [o.action for o in outcomes] == ["skipped", "ran"]
    assert "up to date" in dvc(toy, "status")


def test_unchanged_output_does_not_propagate(toy):
    reproduce(toy, runner(toy, []))
    (toy / "params.yaml").write_text("a: 1 \nb: 1\n")  # same value, reformatted
    log = []
    reproduce(toy, runner(toy, log), force=False)
    assert log == []


def test_run_cache_restores_a_previous_result(toy):
    reproduce(toy, runner(toy, []))
    (toy / "params.yaml").write_text("a: 2\nb: 1\n")
    reproduce(toy, runner(toy, []))
    (toy / "params.yaml").write_text("a: 1\nb: 1\n")
    log = []
    outcomes = reproduce(toy, runner(toy, log))
    assert log == [] and {o.action for o in outcomes} == {"restored"}
    assert (toy / "out" / "first.txt").read_text() == "a: 1"


def test_second_runner_fails_fast_on_the_lock(toy):
    """Another process holds DVC's repo lock (as `dvc repro` does): refused at once."""
    code = "from dvc.repo import Repo; r = Repo('.'); r.lock.lock(); print('held', flush=True); input()"
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=toy, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkspaceBusy, match="another refinery or dvc command"):
            changed_stages(toy)
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_is_reentrant_within_a_process(toy):
    """A command takes the lock before writing params.yaml; the pipeline it then runs re-enters it."""
    with locked_repo(toy):
        assert changed_stages(toy)
