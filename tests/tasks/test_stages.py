"""The stage declaration (tasks/stages.py) is the one list of stages, and dvc.yaml follows it:
every project file a stage's module imports is among that stage's DVC dependencies."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tasks import stages as S

DVC_YAML = S.ROOT / "dvc.yaml"


def dvc_deps() -> dict[str, set[str]]:
    doc = yaml.safe_load(DVC_YAML.read_text())
    return {name: set(spec.get("deps", [])) for name, spec in doc["stages"].items()}


def test_dvc_yaml_is_written_from_the_declaration():
    assert DVC_YAML.read_text() == S.render_dvc_yaml(), "dvc.yaml is stale: run `.venv/bin/python -m tasks.stages`"
    assert list(yaml.safe_load(DVC_YAML.read_text())["stages"]) == list(S.STAGE_NAMES)


def test_every_module_a_stage_imports_is_a_dependency_of_that_stage():
    """Walk each stage's imports module by module from its task entry point (statically, so an
    import inside a function counts too) and check dvc.yaml lists every project file met."""
    deps = dvc_deps()
    for name in S.STAGE_NAMES:
        files = {str(f.relative_to(S.ROOT)) for f in S.code_modules(S.stage(name).module).values()}
        missing = files - deps[name]
        assert not missing, f"stage {name}: imports {sorted(missing)} but dvc.yaml does not list them"


def test_the_static_walk_covers_what_importing_really_loads():
    """A dynamic import (importlib, a registry) would escape the static walk: import each stage's
    module in a fresh interpreter and compare the project modules it loaded."""
    code = ("import json, sys; from tasks import stages as S; out = {}\n"
            "for n in S.STAGE_NAMES:\n"
            "    __import__(S.stage(n).module)\n"
            "out = sorted(m for m in sys.modules if m.split('.')[0] in S.CODE_PACKAGES)\n"
            "print(json.dumps(out))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                           cwd=S.ROOT).stdout))
    walked = set().union(*(S.code_modules(S.stage(n).module) for n in S.STAGE_NAMES))
    assert loaded <= walked | {"tasks.stages", "tasks"}, loaded - walked


def test_code_deps_are_exactly_the_importers():
    """Editing a file reruns exactly the stages that import it: spot checks that fail if a
    stage's deps are a whole folder instead of the files it runs."""
    deps = dvc_deps()
    importers = lambda path: {n for n, d in deps.items() if path in d}  # noqa: E731
    assert importers("refinery/store/arrays.py") == set(S.STAGE_NAMES)
    assert importers("tasks/distill.py") == {"distill", "unlearn"}
    assert "teacher" not in importers("refinery/unlearn/sisa.py")  # models know no method
    assert importers("refinery/upcycle/sparse.py") == {"upcycle"}
    assert "refinery/metrics/unlearning.py" not in deps["upcycle"]


def test_the_stage_list_is_declared_once():
    """No other module spells out the stage list."""
    listing = '"prepare", "teacher", "upcycle", "distill", "unlearn"'
    hits = subprocess.run(["git", "grep", "-l", "-F", listing, "--", "refinery", "tasks", "flows"],
                          cwd=S.ROOT, capture_output=True, text=True).stdout.split()
    assert hits == [], hits


def test_manifest_records_declared_params_and_inputs(tmp_path):
    from refinery.config import PipelineConfig
    from tasks.common import Workspace, write_manifest

    ws = Workspace(tmp_path)
    cfg = PipelineConfig()
    for rel in S.stage("teacher").deps + S.stage("teacher").outs:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    write_manifest(ws, "teacher", cfg)
    manifest = json.loads((tmp_path / S.stage("teacher").manifest).read_text())
    assert set(manifest["config"]) == {"seed", "threads", "teacher"}
    assert set(manifest["inputs"]) == set(S.stage("teacher").deps)
    assert set(manifest["outputs"]) == set(S.stage("teacher").outs) - {S.stage("teacher").manifest}
