"""Model checkpoints as Zarr groups: one array per tensor, never a pickle.

Attrs hold the architecture config, the dtype and shape of each tensor, the training step, and
the group's sha256 content hash over those attrs and every array (written and checked by
`store.arrays`), so an edited attr or a flipped byte is caught before a model is built from it; a
checkpoint without that hash is refused. bfloat16 has no Zarr dtype, so its raw bits are stored
as uint16.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from .arrays import ArtifactError, open_unverified, read_group, verify_attrs, write_arrays

FORMAT = "refinery.checkpoint/1"
_ALLOWED_DTYPES = {
    "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32,
    "uint8": torch.uint8, "bool": torch.bool, "int8": torch.int8, "int16": torch.int16,
}


def _to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str]:
    t = t.detach().cpu().contiguous()
    name = str(t.dtype).removeprefix("torch.")
    if name not in _ALLOWED_DTYPES:
        raise TypeError(f"cannot checkpoint tensor of dtype {t.dtype}")
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy(), name
    return t.numpy(), name


def save_checkpoint(dest: Path | str, tensors: Mapping[str, torch.Tensor], arch: dict[str, Any],
                    step: int = 0, extra: dict[str, Any] | None = None, packed: bool = False) -> str:
    """Write tensors (a state dict, possibly with extra entries) atomically; return the hash.

    `packed=True` concatenates tensors into one flat array per dtype, with the layout in attrs.
    Zarr's cost is per array, so the per-epoch resume state uses it to stay cheap.
    """
    stored, attrs = _payload(tensors, arch, step, extra, packed)
    return write_arrays(dest, stored, attrs, chunk_rows=1 << 30)


def packed_checkpoint(dest: Path | str, tensors: Mapping[str, torch.Tensor], arch: dict[str, Any],
                      step: int = 0, extra: dict[str, Any] | None = None) -> Callable[[], str]:
    """Copy the tensors now (packed) and return a function that writes them, from any thread:
    training can go on changing the tensors while an earlier state is written. For resume
    state, rewritten every epoch and deleted when its stage ends, so it is not compressed:
    zstd took a trained teacher's float32 weights only to 93% of their size."""
    stored, attrs = _payload(tensors, arch, step, copy.deepcopy(extra), packed=True)
    return lambda: write_arrays(dest, stored, attrs, chunk_rows=1 << 30, compress=False)


def _payload(tensors: Mapping[str, torch.Tensor], arch: dict[str, Any], step: int, extra: dict[str, Any] | None,
             packed: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays, dtypes = {}, {}
    for name, tensor in tensors.items():
        arrays[name], dtypes[name] = _to_numpy(tensor)
    shapes = {name: list(a.shape) for name, a in arrays.items()}
    attrs = {"format": FORMAT, "arch": arch, "dtypes": dtypes, "shapes": shapes, "step": int(step),
             "extra": extra or {}, "packed": packed}
    if packed:  # np.concatenate copies
        return _pack(arrays), attrs
    # Zarr stores 0-d arrays as shape (1,); the recorded shapes restore them on load.
    return {n: a.reshape(a.shape or (1,)) for n, a in arrays.items()}, attrs


def _pack(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    by_dtype: dict[str, list[np.ndarray]] = {}
    for name in sorted(arrays):
        by_dtype.setdefault(str(arrays[name].dtype), []).append(arrays[name].reshape(-1))
    return {f"packed_{dt}": np.concatenate(parts) for dt, parts in by_dtype.items()}


def _declared(attrs: Mapping[str, Any], path: Path | str) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """The (dtype, shape) tables of the attrs, each entry checked: an allowed dtype, a shape of
    non-negative ints."""
    dtypes, shapes = attrs.get("dtypes"), attrs.get("shapes")
    if not isinstance(dtypes, dict) or not isinstance(shapes, dict) or set(dtypes) != set(shapes):
        raise ArtifactError(f"{path}: dtype and shape tables are missing or disagree")
    for name, dtype in dtypes.items():
        if not isinstance(dtype, str) or dtype not in _ALLOWED_DTYPES:
            raise ArtifactError(f"{path}/{name}: unsupported dtype {str(dtype)[:40]!r}")
        shape = shapes[name]
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ArtifactError(f"{path}/{name}: shape {str(shape)[:80]} is not a list of sizes")
    return dtypes, {name: tuple(shape) for name, shape in shapes.items()}


def _layout(dtypes: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]],
            packed: bool) -> dict[str, tuple[tuple[int, ...], str]]:
    """The arrays that the dtype and shape tables say are stored: {name: (shape, stored dtype)}."""
    if not packed:  # 0-d tensors are stored with shape (1,)
        return {name: (shapes[name] or (1,), _storage_of(dtypes[name])) for name in dtypes}
    totals: dict[str, int] = {}
    for name in dtypes:
        storage = _storage_of(dtypes[name])
        totals[storage] = totals.get(storage, 0) + math.prod(shapes[name])
    return {f"packed_{storage}": ((total,), storage) for storage, total in totals.items()}


def _unpack(stored: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]],
            dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Split the packed arrays (their lengths already checked against the shapes) into tensors."""
    offsets: dict[str, int] = {}
    out = {}
    for name in sorted(shapes):
        key = f"packed_{_storage_of(dtypes[name])}"
        start, size = offsets.get(key, 0), math.prod(shapes[name])
        out[name] = stored[key][start:start + size].reshape(shapes[name])
        offsets[key] = start + size
    return out


def _storage_of(dtype: str) -> str:
    """The numpy dtype a tensor of `dtype` is stored as (bfloat16 has none: its bits, as uint16)."""
    return "uint16" if dtype == "bfloat16" else dtype


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; returns (tensors, attrs). Raises ArtifactError on any mismatch.

    Before any chunk is read: the attrs must match the content hash, and the stored arrays must
    be exactly the ones the dtype and shape tables declare, each with the declared shape and
    stored dtype (see `_layout`)."""
    group = open_unverified(path)
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a refinery checkpoint (format={str(attrs.get('format'))[:80]!r})")
    verify_attrs(path, attrs)  # the attrs (arch, dtypes, shapes, layout, step, extra) are in the hash
    dtypes, shapes = _declared(attrs, path)
    packed = attrs.get("packed")
    if not isinstance(packed, bool):
        raise ArtifactError(f"{path}: attr packed is {str(packed)[:40]!r}, not true or false")
    arrays = read_group(group, path, layout=_layout(dtypes, shapes, packed))
    if packed:
        arrays = _unpack(arrays, shapes, dtypes)
    else:
        arrays = {name: a.reshape(shapes[name]) for name, a in arrays.items()}
    tensors = {}
    for name, arr in arrays.items():
        tensor = torch.from_numpy(np.array(arr))
        tensors[name] = tensor.view(torch.bfloat16) if dtypes[name] == "bfloat16" else tensor
    return tensors, attrs
