"""prepare: load the source, leave out deleted samples, split by key, write the arrays, the
sample index and the forget set.

Deletion requests come from the ledger (requests/ledger.parquet, refinery/requests/ledger.py):
- a request whose purge has begun is gone: its samples are left out of everything;
- a sample whose content equals a requested sample's (the same image re-added under another
  name) is left out too, and the log names it;
- the other requests are pending, and their training samples are the forget set. With
  `forget.exact` they leave the arrays and are kept apart in forgotten.zarr (so the unlearn stage
  can still score D_f, and the purge can delete them in one place); otherwise they stay in the
  training split and the unlearn stage serves them approximately.
With no pending request, the forget set is the config's (simulated) request, `forget.mode`; once
a ledger exists that request is only ever scored, never removed from training.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from refinery.data import SPLIT_NAMES, TRAIN, choose_test_split, load_source, read_ids_file, resolve_request
from refinery.data.dataset import FORGOTTEN_ARRAYS
from refinery.data.forget import keys_to_ids
from refinery.data.keys import content_hashes, key_split, positional_keys
from refinery.data.splits import stratified_split
from refinery.requests import read_ledger, version
from refinery.store import write_arrays, write_table

from .common import Workspace, log, write_manifest

USER_SOURCES = ("cifar10", "cifar100", "imagefolder", "parquet", "npz")


def admitted(keys: np.ndarray, contents: np.ndarray, requests) -> np.ndarray:
    """Which samples may be prepared: not purged, and not a copy of any requested sample."""
    purged = {k for r in requests if r.reached("purging") for k in r.keys}
    requested = {c: (r.request_id, k) for r in requests for k, c in zip(r.keys, r.contents)}
    named = {k for r in requests for k in r.keys}
    keep = np.array([k not in purged for k in keys.tolist()], dtype=bool)
    for i, (key, content) in enumerate(zip(keys.tolist(), contents.tolist())):
        if key not in named and content in requested:
            request_id, original = requested[content]
            keep[i] = False
            log.warning("prepare: left out %s: same content as %s, deleted by %s", key, original, request_id)
    return keep


def assign_splits(cfg, y: np.ndarray, keys: np.ndarray, published_test) -> tuple[str, np.ndarray]:
    d = cfg.data
    split_used, test_mask = choose_test_split(d.split, published_test, d.path or d.source)
    by_key = d.split_by == "key" or (d.split_by == "auto" and d.source in USER_SOURCES)
    if by_key:
        return split_used, key_split(keys, d.val_fraction, d.test_fraction, cfg.seed, test_mask)
    return split_used, stratified_split(y, d.val_fraction, d.test_fraction, cfg.seed, test_mask)


def forget_set(ws: Workspace, cfg, requests, keys, y, split) -> tuple[np.ndarray, list[str], bool]:
    """(forget sample ids, the pending requests they serve, whether to remove them from training)."""
    pending = [r for r in requests if not r.reached("purging")]
    wanted = {k for r in pending for k in r.keys}
    chosen = np.flatnonzero([k in wanted for k in keys.tolist()] & (split == TRAIN))
    if len(chosen):
        return chosen, [r.request_id for r in pending], cfg.forget.exact
    f = cfg.forget
    named = read_ids_file(ws.root / f.ids_file) if f.mode == "ids" else None
    ids = keys_to_ids(named, keys, "forget.ids_file") if named is not None else None
    chosen = resolve_request(f.mode, y=y, train_mask=split == TRAIN, seed=cfg.seed, classes=f.classes,
                             fraction=f.fraction, ids=ids)
    return chosen, [], f.exact and not requests  # a simulated request never leaves a ledger's training data


def prepare(ws: Workspace) -> None:
    cfg = ws.config()
    out = ws.stage_dir("prepare")
    d = cfg.data
    source = load_source(d.source, n_samples=d.n_samples, path=ws.root / d.path if d.path else None,
                         resize=tuple(d.resize) if d.resize else None,
                         image_column=d.image_column, label_column=d.label_column)
    keys = source.keys if source.keys is not None else positional_keys(len(source.y))
    contents = content_hashes(source.x)
    requests = read_ledger(ws.root)
    keep = admitted(keys, contents, requests)
    x, y, keys, contents = source.x[keep], source.y[keep], keys[keep], contents[keep]
    split_used, split = assign_splits(cfg, y, keys, source.published_test[keep]
                                      if source.published_test is not None else None)
    forget_ids, serving, exact = forget_set(ws, cfg, requests, keys, y, split)
    pending_keys = {k for r in requests if r.request_id in serving for k in r.keys}
    # Exact: D_f and any pending key outside training leave the arrays; D_f is kept apart.
    removed = np.zeros(len(y), dtype=bool)
    if exact:
        removed[forget_ids] = True
        removed |= np.array([k in pending_keys for k in keys.tolist()], dtype=bool)
    honours = sorted({r.request_id for r in requests if r.reached("purging")} | (set(serving) if exact else set()))
    stay, apart = np.flatnonzero(~removed), np.asarray(forget_ids if exact else [], dtype=np.int64)
    attrs = {"source": d.source, "num_classes": source.num_classes, "in_shape": list(x.shape[1:]),
             "split": split_used, "honours": honours}
    # arrays.zarr holds only what training needs, so a request served approximately leaves it (and
    # every stage that reads only it) unchanged.
    write_arrays(out / "arrays.zarr", {"x": x[stay], "y": y[stay], "split": split[stay]}, attrs)
    write_arrays(out / FORGOTTEN_ARRAYS, {"x": x[apart], "y": y[apart]}, {"honours": honours})
    order = np.concatenate([stay, apart])  # new sample ids: arrays positions, then the kept-apart D_f
    new_id = np.full(len(y), -1, dtype=np.int64)
    new_id[order] = np.arange(len(order))
    names = np.array([SPLIT_NAMES[s] for s in split], dtype=object)
    names[apart] = "forgotten"
    index = pd.DataFrame({"sample_id": new_id[order], "sample_key": keys[order].astype(str),
                          "split": names[order], "label": y[order], "forget": np.isin(order, forget_ids),
                          "content": contents[order].astype(str)})
    write_table(out / "index.parquet", index)
    write_table(out / "forget.parquet", pd.DataFrame({"sample_id": new_id[forget_ids],
                                                      "sample_key": keys[forget_ids].astype(str)}),
                metadata={"mode": "ledger" if serving else cfg.forget.mode, "requests": serving, "exact": exact,
                          "request": cfg.forget.model_dump(mode="json")})
    log.info("prepared %s: %s; forget set: %d training samples (%s%s)%s", d.source,
             index.groupby("split").size().to_dict(), len(forget_ids),
             ", ".join(serving) if serving else f"simulated, {cfg.forget.mode}",
             ", exact: removed from training" if exact else "",
             f"; {int((~keep).sum())} deleted samples left out" if (~keep).any() else "")
    write_manifest(ws, "prepare", cfg, extra={"ledger": {"version": version(ws.root), "honours": honours,
                                                         "serving": serving, "exact": exact}},
                   extra_inputs=[ws.root / cfg.forget.ids_file] if cfg.forget.mode == "ids" else [])
