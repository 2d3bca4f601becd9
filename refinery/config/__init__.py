"""Typed configuration for the whole pipeline: one strict pydantic model per stage.

`params.yaml` is the active config. Presets in `pipelines/` are partial overrides that are
merged onto these defaults; the merged, validated result is what gets written to
`params.yaml`, so DVC tracks every value a stage actually used.

A bad key, type or range raises `ConfigError` with one line naming the key and what is
allowed. Nothing runs before the whole config validates.
"""
from .loading import (
    apply_overrides, config_hash, deep_merge, dump_yaml, load, parse_override, read_yaml, to_dict, validate,
)
from .schema import (
    FILE_SOURCES, PUBLISHED_SOURCES, BackboneName, ConfigError, DataConfig, DistillConfig, EvaluateConfig,
    FinetuneConfig, ForgetConfig, GradAscentConfig, LFSSDConfig, LossName, ModelConfig, PipelineConfig,
    RandomLabelConfig, RecipeName, SISAConfig, SSDConfig, SalUnConfig, SourceName, Strict, TeacherConfig,
    TrainConfig, UnlearnConfig, UnlearnMethod, UpcycleConfig, registered,
)

__all__ = [
    "apply_overrides", "config_hash", "deep_merge", "dump_yaml", "load", "parse_override", "read_yaml",
    "to_dict", "validate", "FILE_SOURCES", "PUBLISHED_SOURCES", "BackboneName", "ConfigError", "DataConfig",
    "DistillConfig", "EvaluateConfig", "FinetuneConfig", "ForgetConfig", "GradAscentConfig", "LFSSDConfig",
    "LossName", "ModelConfig", "PipelineConfig", "RandomLabelConfig", "RecipeName", "SISAConfig", "SSDConfig",
    "SalUnConfig", "SourceName", "Strict", "TeacherConfig", "TrainConfig", "UnlearnConfig", "UnlearnMethod",
    "UpcycleConfig", "registered",
]
