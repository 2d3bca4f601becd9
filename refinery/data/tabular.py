"""Array files a user exports from anywhere: a Parquet table and a NumPy `.npz`.

Parquet: one row per sample, `image_column` holds encoded image bytes (PNG/JPEG; also the
Hugging Face {"bytes": ...} struct) or a numeric array, `label_column` holds integer or string
labels (strings map to classes in sorted order).
NPZ: `x` (N, C, ...) channels first, or (N, F) features, and integer `y`; optional `x_test`
and `y_test` form the published test split. Read with allow_pickle=False: no code runs.
Both accept `resize: [H, W]` for images.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from .base import DataSourceError, Source, existing, finish, labels_from, resize_batch
from .keys import content_keys


def _channels_first(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 2:
        return x[:, None, :]  # (N, F): a 1-channel signal, which every backbone accepts
    if x.ndim in (3, 4):
        return x
    raise DataSourceError(f"{where}: inputs must be (N, F), (N, C, L) or (N, C, H, W), got shape {x.shape}")


def _decode(blob: bytes, row: int, where: str, resize: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as img:
            image = img.convert("L") if img.mode in ("1", "L", "I;16", "I") else img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataSourceError(f"{where}: row {row}: cannot decode image ({exc})") from None
    if resize is not None:
        image = image.resize((resize[1], resize[0]), Image.BILINEAR)
    a = np.asarray(image, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _stack(arrays: list[np.ndarray], where: str, hint: str) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        row = next(i for i, a in enumerate(arrays) if a.shape != first)
        raise DataSourceError(f"{where}: row {row} has shape {arrays[row].shape}, row 0 has {first}; {hint}")
    return np.stack(arrays)


def _column_to_x(values: list, where: str, resize: tuple[int, int] | None) -> np.ndarray:
    if any(v is None for v in values):
        raise DataSourceError(f"{where}: the image column has missing values (row {values.index(None)})")
    if isinstance(values[0], dict):
        values = [v.get("bytes") for v in values]
    if isinstance(values[0], (bytes, bytearray)):
        images = [_decode(v, i, where, resize) for i, v in enumerate(values)]
        if len({a.shape[0] for a in images}) > 1:  # mixed grey and colour: promote grey to RGB
            images = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in images]
        return _stack(images, where, "set data.resize: [H, W]")
    try:
        arrays = [np.asarray(v, dtype=np.float32) for v in values]
    except (TypeError, ValueError) as exc:
        raise DataSourceError(f"{where}: the image column is neither image bytes nor numeric arrays ({exc})") from None
    x = _channels_first(_stack(arrays, where, "every array must have one shape"), where)
    return resize_batch(x, resize) if x.ndim == 4 else x


def load_parquet(path: Path | str | None = None, resize: tuple[int, int] | None = None,
                 image_column: str = "image", label_column: str = "label", **_: object) -> Source:
    import pyarrow.parquet as pq

    file = existing(path, "parquet")
    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise DataSourceError(f"{file}: cannot read Parquet ({type(exc).__name__}: {exc})") from None
    for column in (image_column, label_column):
        if column not in table.column_names:
            raise DataSourceError(f"{file}: no column {column!r} (has: {', '.join(table.column_names)})")
    if table.num_rows == 0:
        raise DataSourceError(f"{file}: the table has no rows")
    x = _column_to_x(table.column(image_column).to_pylist(), str(file), resize)
    labels = table.column(label_column).to_pylist()
    textual = any(v is None or isinstance(v, str) for v in labels)
    y, _ = labels_from(np.array(labels, dtype=object if textual else None), f"{file}:{label_column}")
    return finish(x, y, str(file), keys=content_keys(x, y))


def _npz_array(arrays, key: str, where: str) -> np.ndarray:
    try:
        return arrays[key]
    except ValueError as exc:  # an object array needs pickle, which we refuse
        raise DataSourceError(f"{where}: array {key!r} cannot be read without pickle ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataSourceError(f"{where}: array {key!r} is truncated or corrupt ({exc})") from None


def load_npz(path: Path | str | None = None, resize: tuple[int, int] | None = None, **_: object) -> Source:
    file = existing(path, "npz")
    try:
        arrays = np.load(file, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataSourceError(f"{file}: not a readable .npz ({exc})") from None
    with arrays:
        keys = set(arrays.files)
        if not {"x", "y"} <= keys:
            raise DataSourceError(f"{file}: needs arrays 'x' and 'y' (has: {', '.join(sorted(keys)) or 'none'})")
        parts = [("x", "y")] + ([("x_test", "y_test")] if {"x_test", "y_test"} <= keys else [])
        xs = [_channels_first(_npz_array(arrays, kx, str(file)), f"{file}:{kx}") for kx, _ in parts]
        ys = [labels_from(_npz_array(arrays, ky, str(file)), f"{file}:{ky}")[0] for _, ky in parts]
    for (kx, ky), x, y in zip(parts, xs, ys):
        if len(x) != len(y):
            raise DataSourceError(f"{file}: {kx} has {len(x)} samples but {ky} has {len(y)}")
    if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataSourceError(f"{file}: x_test samples have shape {xs[1].shape[1:]}, x has {xs[0].shape[1:]}")
    x = np.concatenate(xs).astype(np.float32)
    x = resize_batch(x, resize) if x.ndim == 4 else x
    test = np.concatenate([np.zeros(len(ys[0]), bool)] + ([np.ones(len(ys[1]), bool)] if len(ys) == 2 else []))
    y = np.concatenate(ys)
    return finish(x, y, str(file), published_test=test if len(ys) == 2 else None, keys=content_keys(x, y))
