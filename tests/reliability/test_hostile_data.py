"""Hostile or absurd data files stop at once with one DataSourceError line naming the file and
the problem, before anything sized by them is built: a label that implies a million classes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refinery.data import DataSourceError, load_source

MAX_CLASSES = 10_000  # refinery.data.base.MAX_CLASSES: more class ids than this is a broken label column


# --------------------------------------------------------------------------- label bounds (npz, parquet)
def write_npz(path, y):
    np.savez(path, x=np.zeros((len(y), 1, 4), dtype=np.float32), y=np.asarray(y))
    return path


def write_parquet(path, y):
    pd.DataFrame({"image": [[0.0, 1.0, 2.0, 3.0]] * len(y), "label": y}).to_parquet(path)
    return path


WRITERS = {"npz": write_npz, "parquet": write_parquet}
LABELS = 200 * [0, 1]


@pytest.mark.parametrize("source", WRITERS)
@pytest.mark.parametrize("bad,problem", [
    (1_000_000, f"label 1000000 (sample 7) exceeds the limit of {MAX_CLASSES} classes"),
    (1000, "label 1000 (sample 7) implies 1001 classes for 400 samples"),
    (-1, "label -1 out of range [0, 2) (sample 7)"),
])
def test_labels_outside_sane_class_ids_are_refused(tmp_path, source, bad, problem):
    labels = list(LABELS)
    labels[7] = bad
    path = WRITERS[source](tmp_path / f"hostile.{source}", labels)
    with pytest.raises(DataSourceError) as caught:
        load_source(source, path=path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)) and problem in message, message


def test_non_integer_float_label_is_refused(tmp_path):
    path = write_npz(tmp_path / "hostile.npz", [0.0, 1.0] * 50 + [1.5])
    with pytest.raises(DataSourceError, match=r"hostile.npz:y: labels must be integers \(found 1.5\)"):
        load_source("npz", path=path)


def test_huge_float_label_is_refused_before_the_int_cast(tmp_path):
    path = write_npz(tmp_path / "hostile.npz", [0.0, 1.0] * 50 + [1e30])
    with pytest.raises(DataSourceError, match=r"hostile.npz:y: label 1e\+30 \(sample 100\) exceeds the limit"):
        load_source("npz", path=path)


def test_sane_labels_still_load(tmp_path):
    src = load_source("npz", path=write_npz(tmp_path / "ok.npz", [0, 1, 2, 3] * 5))
    assert src.num_classes == 4 and len(src.y) == 20
