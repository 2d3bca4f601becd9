"""A pipeline preset's data and teacher architecture, split as the prepare stage splits it."""
from __future__ import annotations

from pathlib import Path

from refinery import config as C
from refinery.data import TEST, TRAIN, VAL, Arrays, load_source, stratified_split
from refinery.models import make_arch

ROOT = Path(__file__).resolve().parents[1]


def preset_data(name: str, seed: int = 0):
    """(config, teacher arch, train, val, test) of pipelines/<name>.yaml at `seed`."""
    raw = C.deep_merge(C.to_dict(C.PipelineConfig()), C.read_yaml(ROOT / "pipelines" / f"{name}.yaml"))
    cfg = C.validate(raw, f"pipelines/{name}.yaml")
    d = cfg.data
    src = load_source(d.source, n_samples=d.n_samples)
    published = src.published_test if d.split == "published" else None
    split = stratified_split(src.y, d.val_fraction, d.test_fraction, seed, published)
    full = Arrays.from_numpy(src.x, src.y)
    arch = make_arch(cfg.teacher.model.model_dump(mode="json"), src.x.shape[1:], src.num_classes)
    return cfg, arch, full.subset(split == TRAIN), full.subset(split == VAL), full.subset(split == TEST)
