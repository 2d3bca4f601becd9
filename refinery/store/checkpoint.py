"""Model checkpoints as Zarr groups: one array per tensor, never a pickle.

Attrs hold the architecture config, the dtype and shape of each tensor, the training step, and
the group's sha256 content hash over those attrs and every array (written and checked by
`store.arrays`), so an edited attr or a flipped byte is caught before a model is built from it; a
checkpoint without that hash is refused. bfloat16 has no
Zarr dtype, so its raw bits are stored as uint16.
"""
from __future__ import annotations

import copy
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


def _unpack(stored: Mapping[str, np.ndarray], shapes: Mapping[str, list[int]],
            dtypes: Mapping[str, str], path: Path | str) -> dict[str, np.ndarray]:
    offsets: dict[str, int] = {}
    out = {}
    for name in sorted(shapes):
        key = next((k for k in stored if k.startswith("packed_") and _storage_of(dtypes[name]) == k[7:]), None)
        if key is None:
            raise ArtifactError(f"{path}: packed array for {name!r} is missing")
        size = int(np.prod(shapes[name], dtype=np.int64))
        start = offsets.get(key, 0)
        chunk = stored[key][start:start + size]
        if chunk.size != size:
            raise ArtifactError(f"{path}: packed array {key} is too short")
        out[name] = chunk.reshape(shapes[name])
        offsets[key] = start + size
    return out


def _storage_of(dtype: str) -> str:
    return {"bfloat16": "uint16", "bool": "bool"}.get(dtype, dtype)


def load_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint; returns (tensors, attrs). Raises ArtifactError on any mismatch."""
    group = open_unverified(path)
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a refinery checkpoint (format={str(attrs.get('format'))[:80]!r})")
    verify_attrs(path, attrs)  # the attrs (arch, dtypes, shapes, layout, step, extra) are in the hash
    arrays = read_group(group, path)
    dtypes, shapes = attrs.get("dtypes"), attrs.get("shapes")
    if not isinstance(dtypes, dict) or not isinstance(shapes, dict) or set(dtypes) != set(shapes):
        raise ArtifactError(f"{path}: dtype and shape tables are missing or disagree")
    try:
        if attrs.get("packed"):
            arrays = _unpack(arrays, shapes, dtypes, path)
        elif set(arrays) != set(dtypes):
            raise ArtifactError(f"{path}: dtype table does not match the stored arrays")
        else:
            arrays = {n: a.reshape(shapes[n]) for n, a in arrays.items()}
    except (ValueError, TypeError) as exc:
        raise ArtifactError(f"{path}: stored shapes do not match attrs: {exc}") from None
    tensors = {}
    for name, arr in arrays.items():
        dtype = dtypes[name]
        if dtype not in _ALLOWED_DTYPES:
            raise ArtifactError(f"{path}/{name}: unsupported dtype {dtype!r}")
        if dtype == "bfloat16":
            tensors[name] = torch.from_numpy(arr.astype(np.uint16)).view(torch.bfloat16)
        else:
            if str(arr.dtype) != dtype and not (dtype == "bool" and arr.dtype == np.bool_):
                raise ArtifactError(f"{path}/{name}: stored dtype {arr.dtype} but attrs say {dtype}")
            tensors[name] = torch.from_numpy(np.array(arr))
    return tensors, attrs
