"""The CLI answers `--help` and bad arguments before importing anything heavy, and sets Prefect's
environment before anything imports prefect, so the project's settings are the ones in effect.
Each check runs in a fresh interpreter: this test process has long since imported prefect."""
import json
import os
import subprocess
import sys

from tests.project import PROJECT

HEAVY = ("prefect", "torch", "dvc", "refinery.train", "pandas")


def fresh_python(code: str, cwd, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=300)


LOADED_AFTER = """
import sys
from flows.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    print("exit", exc.code)
print("heavy:", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_help_and_argument_errors_import_nothing_heavy():
    for argv, code in ((["--help"], 0), (["run", "--help"], 0), (["run", "--bogus"], 2), (["stage", "nope"], 2)):
        proc = fresh_python(LOADED_AFTER.format(argv=argv, heavy=HEAVY), PROJECT)
        assert f"exit {code}" in proc.stdout, proc.stdout + proc.stderr
        assert "heavy: []" in proc.stdout, (argv, proc.stdout)


SETTINGS = """
import json
from flows import cli
root = cli.prepare(cli.build_parser().parse_args(["run"]))
from prefect.settings import get_current_settings
s = get_current_settings()
print(json.dumps({"home": str(s.home), "storage": str(s.results.local_storage_path),
                  "timeout": s.server.ephemeral.startup_timeout_seconds, "extra": s.logging.extra_loggers,
                  "host": s.server.api.host, "root": str(root)}))
"""


def test_prefect_settings_are_the_projects(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    proc = fresh_python(SETTINGS, tmp_path, PYTHONPATH=str(PROJECT))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    home = tmp_path.resolve() / ".prefect"
    assert s["root"] == str(tmp_path.resolve())
    assert s["home"] == str(home)
    assert s["storage"].startswith(str(home))  # results stay in the project, not in ~/.prefect
    assert s["timeout"] == 120
    assert "refinery" in (s["extra"] if isinstance(s["extra"], list) else s["extra"].split(","))
    assert s["host"] == "127.0.0.1"
