"""The same seed gives bit-identical checkpoints for every stage, and the same metrics, on the CPU."""
import json

from tasks.stages import PIPELINE
from tests.project import metrics, run, without_timings

STAGES = [s.name for s in PIPELINE]


def manifest_outputs(project) -> dict:
    """Each stage's recorded output hashes, less the outputs that record wall-clock times."""
    out = {}
    for s in PIPELINE:
        recorded = json.loads((project / s.manifest).read_text())["outputs"]
        out[s.name] = {k: v for k, v in recorded.items() if k in s.reproducible_outs}
    return out


def test_rerun_with_the_same_seed_is_bit_identical(smoke_project):
    before_outputs, before_metrics = manifest_outputs(smoke_project), metrics(smoke_project)
    run(smoke_project, "refinery", "run", "--force")
    after = manifest_outputs(smoke_project)
    for stage in STAGES:
        assert after[stage] == before_outputs[stage], f"{stage} outputs differ between two runs with one seed"
    assert without_timings(metrics(smoke_project)) == without_timings(before_metrics)
    assert "up to date" in run(smoke_project, "dvc", "status").stdout
