"""Typed configuration for the whole pipeline: one strict pydantic model per stage.

`params.yaml` is the active config. Presets in `pipelines/` are partial overrides that are
merged onto these defaults; the merged, validated result is what gets written to
`params.yaml`, so DVC tracks every value a stage actually used.

A bad key, type or range raises `ConfigError` with one line naming the key and what is
allowed. Nothing runs before the whole config validates.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A config problem, described in one line that names the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class DataConfig(Strict):
    source: Literal["digits", "mnist1d"] = "digits"
    n_samples: int = Field(5000, ge=100, le=1_000_000, description="mnist1d only: samples to generate")
    split: Literal["stratified", "published"] = Field(
        "stratified", description="published: mnist1d's own train/test split; val comes from train")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)


    @model_validator(mode="after")
    def _published_needs_mnist1d(self) -> "DataConfig":
        if self.split == "published" and self.source != "mnist1d":
            raise ValueError("data.split 'published' exists only for source 'mnist1d'")
        return self


class ForgetConfig(Strict):
    """The deletion request: which training samples must be forgotten."""

    mode: Literal["classes", "fraction", "ids"] = "classes"
    classes: list[int] = Field(default_factory=lambda: [3])
    fraction: float = Field(0.1, gt=0.0, lt=1.0)
    ids_file: str | None = Field(None, description="CSV or Parquet with a sample_id column")

    @model_validator(mode="after")
    def _request_is_complete(self) -> "ForgetConfig":
        if self.mode == "ids" and not self.ids_file:
            raise ValueError("forget.ids_file must be set when forget.mode is 'ids'")
        if self.mode == "classes" and not self.classes:
            raise ValueError("forget.classes must name at least one class when mode is 'classes'")
        return self


# --------------------------------------------------------------------------- models
class ModelConfig(Strict):
    arch: Literal["cct", "mlp"] = "cct"
    dim: int = Field(64, ge=4, le=4096)
    depth: int = Field(2, ge=1, le=48)
    heads: int = Field(2, ge=1, le=64)
    mlp_ratio: float = Field(2.0, gt=0.0, le=16.0)
    conv_channels: int = Field(32, ge=1, le=4096, description="cct: tokenizer width")
    conv_kernel: int = Field(3, ge=1, le=15)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> "ModelConfig":
        if self.arch == "cct" and self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class TrainConfig(Strict):
    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.05, ge=0.0, le=10.0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, ge=0.0)


class TeacherConfig(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- upcycle
class UpcycleConfig(Strict):
    recipe: Literal["sparse"] = "sparse"
    num_experts: int = Field(4, ge=1, le=256)
    top_k: int = Field(2, ge=1, le=256)
    aux_coef: float = Field(1e-2, ge=0.0)
    z_coef: float = Field(1e-3, ge=0.0)
    capacity_factor: float | None = Field(None, gt=0.0, description="None means dropless")
    train_scope: Literal["all", "router"] = "all"
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=10, lr=1e-3))

    @model_validator(mode="after")
    def _k_at_most_e(self) -> "UpcycleConfig":
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must be <= num_experts ({self.num_experts})")
        return self


# --------------------------------------------------------------------------- distill
class DistillConfig(Strict):
    """Student distillation.

    Convention for `kd`: L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(p_t || p_s), so
    `alpha` weights the distillation term (the mdistiller convention).
    """

    loss: Literal["kd"] = "kd"
    teacher: Literal["teacher", "upcycle"] = "upcycle"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(dim=32, heads=2, depth=1, conv_channels=16))
    train: TrainConfig = Field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- unlearn
class SSDConfig(Strict):
    alpha: float = Field(10.0, gt=0.0, description="selection threshold: I_f > alpha * I_D")
    lam: float = Field(1.0, gt=0.0, description="dampening strength lambda")


class FinetuneConfig(Strict):
    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=10.0)


class UnlearnConfig(Strict):
    methods: list[Literal["retrain", "finetune", "ssd"]] = Field(
        default_factory=lambda: ["retrain", "finetune", "ssd"])
    target: Literal["student", "teacher"] = "student"
    ssd: SSDConfig = Field(default_factory=SSDConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)

    @model_validator(mode="after")
    def _methods_are_distinct(self) -> "UnlearnConfig":
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"unlearn.methods has duplicates: {self.methods}")
        if "retrain" not in self.methods:
            raise ValueError("unlearn.methods must include 'retrain', the gold standard every gap is measured against")
        return self


# --------------------------------------------------------------------------- evaluate
class EvaluateConfig(Strict):
    ece_bins: int = Field(15, ge=2, le=1000)
    latency_repeats: int = Field(20, ge=1, le=10_000)
    throughput_batch: int = Field(256, ge=1, le=65_536)


# --------------------------------------------------------------------------- pipeline
class PipelineConfig(Strict):
    name: str = "digits"
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    forget: ForgetConfig = Field(default_factory=ForgetConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    upcycle: UpcycleConfig = Field(default_factory=UpcycleConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    unlearn: UnlearnConfig = Field(default_factory=UnlearnConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


STAGES = ("prepare", "teacher", "upcycle", "distill", "unlearn", "evaluate")


# --------------------------------------------------------------------------- loading
def _describe(err: dict[str, Any], model: type[BaseModel]) -> str:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent = _submodel(model, err["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else "?"
        return f"{key}: unknown key (allowed here: {allowed})"
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if isinstance(got, dict) or (isinstance(got, list) and len(repr(got)) > 60):
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {got!r})"


def _submodel(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        model = field.annotation
    return model


def validate(raw: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validate a raw mapping; on failure raise ConfigError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise ConfigError(f"{source}: {_describe(first, PipelineConfig)}{suffix}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def load(path: Path) -> PipelineConfig:
    return validate(read_yaml(path), str(path))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `a.b.c=value`; the value is read as YAML so numbers, lists and nulls work."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key segment")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    out = copy.deepcopy(raw)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def to_dict(cfg: BaseModel) -> dict[str, Any]:
    return cfg.model_dump(mode="json")


def dump_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def config_hash(section: BaseModel | dict) -> str:
    """A short, stable hash of a config section (sorted JSON)."""
    data = to_dict(section) if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
