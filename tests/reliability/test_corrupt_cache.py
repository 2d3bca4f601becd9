"""A corrupt entry under .refinery/ (a resume state, a cached importance) is dropped with a
warning naming it and recomputed: it never fails a run, and the result is the one a run without
it gives."""
import json
import logging
from pathlib import Path

import pytest
import torch

from refinery.models import build_model
from refinery.train import fit
from tests.project import run
from tests.refinery.test_run_identity import ARCH, CFG, crashed_run, toy_data


def flip_a_chunk_byte(group: Path) -> Path:
    chunk = next(p for p in sorted(group.rglob("*")) if p.is_file() and "/c/" in p.as_posix())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return chunk


def test_a_corrupt_resume_state_is_dropped_and_training_starts_afresh(tmp_path, caplog):
    state = tmp_path / "state.zarr"
    crashed_run(state)
    flip_a_chunk_byte(state)
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="refinery"):
        model = build_model(ARCH)
        result = fit(model, toy_data(), CFG, seed=3, arch=ARCH, checkpoint=state)
    assert result.resumed_from == 0
    assert any(str(state) in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    torch.manual_seed(0)
    fresh = build_model(ARCH)
    fit(fresh, toy_data(), CFG, seed=3, arch=ARCH)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


@pytest.fixture
def project(smoke_copy):
    return smoke_copy


def test_a_corrupt_cached_importance_is_recomputed(project):
    entries = list((project / ".refinery" / "cache" / "unlearn" / "ssd_importance").glob("*.zarr"))
    assert len(entries) == 1
    scores = project / "data" / "unlearn" / "metrics.json"
    before = {k: json.loads(scores.read_text())["ssd"][k] for k in ("UA", "RA", "TA", "MIA")}
    flip_a_chunk_byte(entries[0])
    out = run(project, "refinery", "stage", "unlearn")  # the stage alone, as dvc repro runs it
    text = out.stdout + out.stderr
    assert "unreadable" in text and entries[0].name in text, text[-3000:]
    after = {k: json.loads(scores.read_text())["ssd"][k] for k in before}
    assert after == before  # recomputed: the same numbers
    assert json.loads((entries[0] / "zarr.json").read_text())  # rewritten whole
