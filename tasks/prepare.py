"""prepare: load the source, split it, write arrays, the sample index and the forget request."""
from __future__ import annotations

import numpy as np
import pandas as pd

from refinery.data import (SPLIT_NAMES, TRAIN, choose_test_split, load_source, read_ids_file, resolve_request,
                           stratified_split)
from refinery.data.forget import FORGOTTEN
from refinery.store import write_arrays, write_table

from .common import Workspace, log, write_manifest


def prepare(ws: Workspace) -> None:
    cfg = ws.config()
    out = ws.stage_dir("prepare")
    d = cfg.data
    source = load_source(d.source, n_samples=d.n_samples, path=ws.root / d.path if d.path else None,
                         resize=tuple(d.resize) if d.resize else None,
                         image_column=d.image_column, label_column=d.label_column)
    split_used, published_test = choose_test_split(d.split, source.published_test, d.path or d.source)
    split = stratified_split(source.y, cfg.data.val_fraction, cfg.data.test_fraction, cfg.seed, published_test)
    f = cfg.forget
    ids = read_ids_file(ws.root / f.ids_file) if f.mode == "ids" else None
    forget_ids = resolve_request(f.mode, y=source.y, train_mask=split == TRAIN, seed=cfg.seed,
                                 classes=f.classes, fraction=f.fraction, ids=ids)
    sample_id = np.arange(len(source.y), dtype=np.int64)
    # arrays.zarr holds only what training needs, so a new forget request leaves it (and every
    # stage that reads only it) unchanged.
    attrs = {"source": cfg.data.source, "num_classes": source.num_classes, "in_shape": list(source.x.shape[1:]),
             "split": split_used}
    trained_on = split
    if f.exact:  # exact request: D_f leaves the training split, so every stage downstream reruns without it
        trained_on = split.copy()
        trained_on[forget_ids] = FORGOTTEN
        attrs["forgotten"] = int(len(forget_ids))
    write_arrays(out / "arrays.zarr", {"x": source.x, "y": source.y, "split": trained_on}, attrs)
    index = pd.DataFrame({"sample_id": sample_id, "split": [SPLIT_NAMES[s] for s in split],
                          "label": source.y, "forget": np.isin(sample_id, forget_ids)})
    write_table(out / "index.parquet", index)
    write_table(out / "forget.parquet", pd.DataFrame({"sample_id": forget_ids}),
                metadata={"mode": f.mode, "request": f.model_dump(mode="json")})
    counts = index.groupby("split").size().to_dict()
    log.info("prepared %s: %s; forget request: %d training samples (%s%s)",
             cfg.data.source, counts, len(forget_ids), f.mode, ", exact: removed from training" if f.exact else "")
    write_manifest(ws, "prepare", cfg, extra_inputs=[ws.root / f.ids_file] if f.mode == "ids" else [])

