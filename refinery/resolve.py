"""The active config of a project: a preset or params.yaml, plus --set overrides, plus the stamp
of the user's data files; and params.yaml written from it. The CLI and the nightly flow share it."""
from __future__ import annotations

from pathlib import Path

from . import config as C


def resolve_config(root: Path, pipeline: str | None, overrides: list[str]) -> C.PipelineConfig:
    """Build the active config: a preset (merged onto defaults) or params.yaml, plus overrides."""
    if pipeline:
        preset = root / "pipelines" / f"{pipeline}.yaml"
        if not preset.exists():
            known = sorted(p.stem for p in (root / "pipelines").glob("*.yaml"))
            raise C.ConfigError(f"--pipeline: unknown pipeline {pipeline!r} (known: {', '.join(known)})")
        raw = C.deep_merge(C.to_dict(C.PipelineConfig()), C.read_yaml(preset))
        source = str(preset.relative_to(root))
    else:
        raw, source = C.read_yaml(root / "params.yaml"), "params.yaml"
    if overrides:
        raw, source = C.apply_overrides(raw, overrides), f"{source} with --set"
    return with_fingerprint(root, C.validate(raw, source))


def with_fingerprint(root: Path, cfg: C.PipelineConfig) -> C.PipelineConfig:
    """The config with data.fingerprint describing the files under data.path as they are now
    (and forget.fingerprint the request's ids file and the deletion ledger's requests).
    DVC cannot list a path chosen in params.yaml among prepare's deps, so the files' state
    enters as a param instead: edited user data reruns prepare and everything after it."""
    from .data import fingerprint  # torch and the data sources, only when needed
    from .requests import fingerprint as requests_fingerprint, read_ledger

    stamp = fingerprint(root / cfg.data.path) if cfg.data.path else None
    f = cfg.forget  # a request's ids file likewise: an edited file is a new request
    ids_stamp = fingerprint(root / f.ids_file) if f.mode == "ids" and f.ids_file else None
    ledger = requests_fingerprint(read_ledger(root))  # and the deletion ledger's keys and purges
    if ledger:
        ids_stamp = f"{ids_stamp}+{ledger}" if ids_stamp else f"ledger:{ledger}"
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"fingerprint": stamp}),
                                  "forget": f.model_copy(update={"fingerprint": ids_stamp})})


def write_params(root: Path, cfg: C.PipelineConfig) -> None:
    from .store import write_text

    text = C.dump_yaml(cfg)
    path = root / "params.yaml"
    if not path.exists() or path.read_text() != text:
        write_text(path, text)
