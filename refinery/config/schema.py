"""The config's schema: one strict pydantic model per stage, and the pipeline that holds them.
Method names are checked against their registries (`registered`), the one list of them."""
from __future__ import annotations

import importlib
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator


class ConfigError(ValueError):
    """A config problem, described in one line that names the key."""


def registered(module: str, registry: str, what: str) -> Any:
    """A name that must be registered in `module.registry` (a method's file registers it). The
    registry is the one list of names; it is imported only when a config is validated."""
    def check(value: str) -> str:
        names = getattr(importlib.import_module(module), registry)
        if value not in names:
            raise ValueError(f"unknown {what}; registered: {', '.join(repr(n) for n in sorted(names))}")
        return value
    return Annotated[str, AfterValidator(check)]


SourceName = registered("refinery.data.sources", "SOURCES", "data source")
BackboneName = registered("refinery.models", "BACKBONES", "backbone")
LossName = registered("refinery.distill", "LOSSES", "distillation loss")
UnlearnMethod = registered("refinery.unlearn.base", "METHODS", "unlearning method")
RecipeName = registered("refinery.upcycle", "RECIPES", "upcycling recipe")


def _admits_bool(annotation: Any) -> bool:
    return annotation is bool or any(_admits_bool(arg) for arg in get_args(annotation))


class Strict(BaseModel):
    """The base of every section: unknown keys are refused, every float must be finite (no inf or
    NaN), and true/false is refused where a number is meant (pydantic would read it as 1 or 0)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("true/false is not a number")
        return value


# --------------------------------------------------------------------------- data
FILE_SOURCES = ("cifar10", "cifar100", "imagefolder", "parquet", "npz")
PUBLISHED_SOURCES = ("mnist1d", "cifar10", "cifar100", "npz")  # npz: when it holds x_test/y_test


class DataConfig(Strict):
    """Built-in sources (digits, mnist1d) or user data read from `path` (see refinery/data/)."""

    source: SourceName = "digits"
    n_samples: int = Field(5000, ge=100, le=1_000_000, description="mnist1d only: samples to generate")
    split: Literal["auto", "stratified", "published"] = Field(
        "auto", description="auto: the source's own test split where it has one (CIFAR's test batch, an npz's "
        "x_test/y_test, MNIST-1D), else stratified; published: require the source's split; stratified: carve "
        "the test set from every sample. val always comes from train")
    split_by: Literal["auto", "key", "stratified"] = Field("auto", description="key: split by a hash of each sample's "
        "stable key (added samples move no other); stratified: exact class shares; auto: key for user data")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    path: str | None = Field(None, description="user sources: file or folder, relative to the project root")
    resize: list[int] | None = Field(None, description="images: [H, W] to resize every image to")
    image_column: str = Field("image", description="parquet: image bytes or numeric array column")
    label_column: str = Field("label", description="parquet: integer or string label column")
    fingerprint: str | None = Field(None, description=(
        "set by `refinery run` from the names and content of the files under data.path, so that "
        "changed files rerun prepare (DVC sees a changed param); leave it to refinery"))

    @model_validator(mode="after")
    def _source_settings_fit(self) -> DataConfig:
        if self.split == "published" and self.source not in PUBLISHED_SOURCES:
            raise ValueError(f"data.split 'published' exists only for sources {', '.join(PUBLISHED_SOURCES)}")
        if self.source in FILE_SOURCES and not self.path:
            raise ValueError(f"data.path must be set for source {self.source!r}")
        if self.resize is not None and (len(self.resize) != 2 or not all(1 <= v <= 4096 for v in self.resize)):
            raise ValueError(f"data.resize must be [H, W] with sides in 1..4096 (got {self.resize})")
        return self


class ForgetConfig(Strict):
    """A simulated deletion request, scored when the ledger has none pending, and how requests are served."""

    mode: Literal["classes", "fraction", "ids"] = "classes"
    classes: list[int] = Field(default_factory=lambda: [3])
    fraction: float = Field(0.1, gt=0.0, lt=1.0)
    ids_file: str | None = Field(None, description="CSV or Parquet with a sample_id column")
    fingerprint: str | None = Field(None, description="set by refinery from ids_file's content; leave it")
    exact: bool = Field(False, description="retrain the whole lineage without the forgotten samples: prepare "
                                           "drops them from the training split, so every stage reruns")
    serve_method: str | None = Field(None, description="the unlearning method whose model serves a new deletion "
                                     "request (data/deploy/); default: the smallest Avg.Gap to retrain on it")

    @field_validator("ids_file")
    @classmethod
    def _ids_file_inside_the_project(cls, path: str | None) -> str | None:
        if path is not None and (PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts):
            raise ValueError("the ids file must lie inside the project, named relative to its root; copy it in")
        return path

    @model_validator(mode="after")
    def _request_is_complete(self) -> ForgetConfig:
        if self.mode == "ids" and not self.ids_file:
            raise ValueError("forget.ids_file must be set when forget.mode is 'ids'")
        if self.mode == "classes" and not self.classes:
            raise ValueError("forget.classes must name at least one class when mode is 'classes'")
        return self


# --------------------------------------------------------------------------- models
class ModelConfig(Strict):
    """cct (2-D or 1-D inputs), mlp, or the CIFAR ResNets resnet8x4 / resnet32x4 (which use no
    transformer fields; their widths are fixed by the name, and they have no FFN to upcycle)."""

    arch: BackboneName = "cct"
    dim: int = Field(64, ge=4, le=4096)
    depth: int = Field(2, ge=1, le=48)
    heads: int = Field(2, ge=1, le=64)
    mlp_ratio: float = Field(2.0, gt=0.0, le=16.0)
    conv_channels: int = Field(32, ge=1, le=4096, description="cct: tokenizer width")
    conv_kernel: int = Field(3, ge=1, le=15)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    gated_attention: bool = Field(False, description="cct: sigmoid output gate after SDPA (Gated Attention)")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> ModelConfig:
        if self.arch == "cct" and self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        return self


class TrainConfig(Strict):
    epochs: int = Field(40, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(3e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.05, ge=0.0, le=10.0)
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="adamw (fused) or sgd with momentum")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    nesterov: bool = Field(False, description="sgd only")
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, ge=0.0)
    subset_fraction: float = Field(1.0, gt=0.0, le=1.0, description=(
        "RS2: each epoch trains on a fresh random subset of this fraction, without replacement across epochs"))
    msd_samples: int = Field(1, ge=1, le=64, description="Multi-Sample Dropout: masks through the shared head")
    msd_dropout: float = Field(0.0, ge=0.0, lt=1.0, description=(
        "Multi-Sample Dropout rate before the head; 0 turns it off (the cross-entropy loss only)"))
    augment_crop: int = Field(0, ge=0, le=64, description="images/signals: random crop after this much zero padding")
    augment_flip: bool = Field(False, description="images: random horizontal flips")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "bf16 autocast; auto: bf16 on a GPU that supports it, fp32 on the CPU (bf16 measured 0.94x there)"))
    channels_last: bool | None = Field(None, description="images: channels_last memory format; None: on a GPU only")
    compile: bool = Field(False, description="torch.compile the model (a warm-up of tens of seconds; measured 0.6x "
                                             "for a small CCT on a 2-core CPU)")


class TeacherConfig(Strict):
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


# --------------------------------------------------------------------------- upcycle
class UpcycleConfig(Strict):
    """Recipes: sparse (copies), dmu (diversified FFN variants), moepp (zero-computation
    experts), mola (LoRA experts, counts per layer), phatgoose (independent LoRA experts).
    Defaults follow each recipe's reference code; the keys that depart from it are named in the
    recipe's docstring (refinery/upcycle/<recipe>.py)."""

    recipe: RecipeName = "sparse"
    num_experts: int = Field(4, ge=1, le=256)
    top_k: int = Field(2, ge=1, le=256)
    aux_coef: float = Field(1e-2, ge=0.0)
    z_coef: float = Field(1e-3, ge=0.0)
    capacity_factor: float | None = Field(None, gt=0.0, description="None means dropless")
    train_scope: Literal["all", "router"] = "all"
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=10, lr=1e-3))
    expert_epochs: int = Field(5, ge=1, le=1000, description="dmu/phatgoose: epochs per expert (and per gate)")
    dmu_aux_coef: float = Field(1e-2, ge=0.0, description="dmu: balance coefficient of the router training")
    lora_rank: int = Field(8, ge=1, le=1024)
    lora_alpha: float = Field(16.0, gt=0.0, description="mola: LoRA scale alpha / r (the reference's 16)")
    mola_experts: list[int] = Field(default_factory=lambda: [2, 4, 6, 8],
                                    description="mola: LoRA experts per group of layers, spread over the depth")
    mola_balance: bool = Field(False, description="mola: add the balance loss (the reference's obalance, off)")
    mola_aux_coef: float = Field(1e-3, ge=0.0, description="mola: balance coefficient when mola_balance is on")
    mola_lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="mola: dropout on the adapters' input")
    phatgoose_lora_alpha: float = Field(1.0, gt=0.0, description=(
        "phatgoose: LoRA scale alpha / r; 1 is the reference's output / r (divide_by_d_bottleneck)"))
    moepp_zero: int = Field(1, ge=0, le=64)
    moepp_copy: int = Field(1, ge=0, le=64)
    moepp_constant: int = Field(2, ge=0, le=64, description="the reference has two constant experts")
    moepp_tau: float = Field(0.75, gt=0.0, le=1.0, description="balance weight of zero-computation experts")
    moepp_router: Literal["two_layer", "linear"] = Field("two_layer", description=(
        "two_layer: W2 tanh(W1 x), 8R wide (the reference); linear: the vanilla MoE router"))
    moepp_scale_inputs: bool = Field(True, description="experts see top_k * x (the reference); False: x")
    moepp_residual_init: Literal["normal", "zero"] = Field("normal", description=(
        "gating residual W_g init: N(0, 0.02) (the reference) or zero (starts as a vanilla MoE)"))
    compare: bool = Field(False, description=(
        "also train every other recipe, and MoLA increasing / uniform / decreasing at an equal total, from the "
        "same teacher; the report tabulates them against the dense teacher (minutes: one run per variant)"))

    @model_validator(mode="after")
    def _k_at_most_e(self) -> UpcycleConfig:
        if self.recipe == "mola":
            if not self.mola_experts or self.top_k > min(self.mola_experts):
                raise ValueError(f"top_k ({self.top_k}) must be <= every mola_experts count ({self.mola_experts})")
            return self
        extra = self.moepp_zero + self.moepp_copy + self.moepp_constant if self.recipe == "moepp" else 0
        if self.top_k > self.num_experts + extra:
            raise ValueError(f"top_k ({self.top_k}) must be <= num_experts ({self.num_experts + extra})")
        return self


# --------------------------------------------------------------------------- distill
class DistillConfig(Strict):
    """Student distillation.

    Convention for `kd`: L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(p_t || p_s), so
    `alpha` weights the distillation term (the mdistiller convention). `kd`, `dual_head`
    (main head) and `multi_teacher` use `temperature` and `alpha`; `dkd`, `sinkhorn` and
    `dual_head` (auxiliary head) have their own keys below; `pld` has none (it replaces CE+KD).
    Defaults follow each loss's reference code; the keys that depart from it are named in the
    loss's docstring. Every CE term uses `train.label_smoothing` (the references use none). The
    formulas are in each loss's docstring (refinery/distill/<loss>.py).
    """

    loss: LossName = "kd"
    teacher: Literal["teacher", "upcycle"] = "upcycle"
    temperature: float = Field(4.0, gt=0.0, le=100.0)
    alpha: float = Field(0.9, ge=0.0, le=1.0)
    dkd_alpha: float = Field(1.0, ge=0.0, description="dkd: weight of TCKD")
    dkd_beta: float = Field(8.0, ge=0.0, description="dkd: weight of NCKD")
    dkd_warmup_epochs: int = Field(20, ge=0, description=(
        "dkd: KD weight min(epoch / this, 1), epoch counted from 1 in the training loop's epochs; 0: no warm-up"))
    sinkhorn_temperature: float = Field(2.0, gt=0.0, le=100.0)
    sinkhorn_eps: float = Field(0.1, gt=0.0, description="sinkhorn: entropic regulariser, K = exp(-C / eps)")
    sinkhorn_iters: int = Field(20, ge=1, le=1000, description="sinkhorn: rounds of row then column normalisation")
    sinkhorn_weight: float = Field(0.001, ge=0.0, description=(
        "sinkhorn: L = CE + weight * sum(P * C), P with rows and columns summing to 1 (the reference's 0.001)"))
    sinkhorn_kd_alpha: float = Field(0.0, ge=0.0, le=1.0, description=(
        "sinkhorn: 0 = CE as the base; a > 0: (1 - a) * CE + a * KD at `temperature` (the reference's GLUE scripts)"))
    dual_head_temperature: float = Field(2.0, gt=0.0, le=100.0)
    dual_head_weight: float = Field(1.0, ge=0.0, description="dual_head: weight of the auxiliary head's loss")
    dual_head_main: Literal["ce", "kd"] = Field("ce", description=(
        "dual_head: main head trained with CE (the reference code) or the `kd` mix (METHODS.md's reading)"))
    dual_head_reduction: Literal["sum", "mean"] = Field("sum", description=(
        "dual_head: BinaryKL-Norm summed over classes, mean over samples (the reference), or mean over both"))
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(dim=32, heads=2, depth=1, conv_channels=16))
    train: TrainConfig = Field(default_factory=TrainConfig)
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description=(
        "the student and its controls (scratch, random teacher) train on this seeded random fraction of the "
        "training split, the same subset for all, stratified by class (KD at reduced data); the teacher keeps all"))

    @model_validator(mode="after")
    def _multi_teacher_needs_experts(self) -> DistillConfig:
        if self.loss == "multi_teacher" and self.teacher != "upcycle":
            raise ValueError("distill.loss 'multi_teacher' distils the experts of the upcycled MoE; "
                             "it needs distill.teacher 'upcycle'")
        return self


# --------------------------------------------------------------------------- unlearn
class SSDConfig(Strict):
    alpha: float = Field(10.0, gt=0.0, description="selection threshold: I_f > alpha * I_D")
    lam: float = Field(1.0, gt=0.0, description="dampening strength lambda")
    importance: Literal["reference", "per_sample"] = Field("reference", description=(
        "reference: the reference code's squared batch-mean gradients over D_r then D_f in loader order "
        "(class-grouped for a class request); per_sample: the paper's Fisher diagonal, the mean of squared "
        "per-sample gradients, which no batching or order changes"))
    batch_size: int | None = Field(None, ge=1, le=65_536, description=(
        "reference importance: the loader batch; None: the model's training batch size (as the reference, -b)"))


class FinetuneConfig(Strict):
    epochs: int = Field(5, ge=1, le=1000)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    lr_grid: list[float] = Field(default_factory=lambda: [3e-4, 1e-3, 3e-3], description="unlearn.select_lr candidates")


class GradAscentConfig(Strict):
    epochs: int = Field(2, ge=1, le=1000)
    lr: float = Field(1e-4, gt=0.0, le=10.0, description="very sensitive: chosen by unlearn.select_lr when it is on")
    lr_grid: list[float] = Field(default_factory=lambda: [1e-5, 1e-4, 1e-3, 1e-2],
                                 description="unlearn.select_lr candidates (the SalUn maintainers searched 1e-5..1e-1)")


class RandomLabelConfig(Strict):
    """RL as the SalUn reference code runs it (Classification/unlearn/RL.py, CIFAR-10 branch):
    SGD with momentum, plain CE, per epoch a pass over D_f with labels redrawn per batch from all
    C classes, then a pass over D_r, at a constant LR."""

    epochs: int = Field(10, ge=1, le=1000)
    lr: float = Field(0.013, gt=0.0, le=10.0)
    lr_grid: list[float] = Field(default_factory=lambda: [0.004, 0.013, 0.04], description="select_lr candidates")
    batch_size: int = Field(256, ge=1, le=65_536)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=10.0)
    order: Literal["forget_then_retain", "mixed"] = Field("forget_then_retain", description=(
        "forget_then_retain: the reference's CIFAR-10/SVHN branch; mixed: its CIFAR-100 branch, one shuffled "
        "set of D_f (labels drawn once per epoch from all C classes) and D_r"))


class SalUnConfig(RandomLabelConfig):
    """SalUn = RL (the fields above, same defaults: the reference's CIFAR-10 command, 10 epochs at
    lr 0.013) on the weights of the saliency mask only."""

    sparsity: float = Field(0.5, gt=0.0, lt=1.0, description="share of weights the saliency mask keeps (top |grad|)")
    mask_batch_size: int = Field(256, ge=1, le=65_536, description="batch of the mask's gradient (a sum of "
                                 "batch-mean gradients, so it depends on the batch); 256 as the reference's loaders")


class LFSSDConfig(Strict):
    alpha: float = Field(10.0, gt=0.0, description="selection threshold: I_f > alpha * I_D")
    lam: float = Field(1.0, gt=0.0, description="dampening strength lambda")
    importance: Literal["reference", "per_sample"] = Field("reference", description=(
        "reference: mean |grad| of batch-mean ||f||^2 over D_r then D_f in loader order; per_sample: mean of "
        "per-sample |grad|, independent of batching and order"))
    batch_size: int | None = Field(None, ge=1, le=65_536, description="reference importance: None = training batch")


class SISAConfig(Strict):
    shards: int = Field(4, ge=1, le=256)
    slices: int = Field(4, ge=1, le=256)


class UnlearnConfig(Strict):
    methods: list[UnlearnMethod] = Field(default_factory=lambda: ["retrain", "finetune", "ssd"])
    target: Literal["student", "teacher", "upcycle"] = "student"
    ssd: SSDConfig = Field(default_factory=SSDConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    grad_ascent: GradAscentConfig = Field(default_factory=GradAscentConfig)
    random_label: RandomLabelConfig = Field(default_factory=RandomLabelConfig)
    salun: SalUnConfig = Field(default_factory=SalUnConfig)
    lfssd: LFSSDConfig = Field(default_factory=LFSSDConfig)
    sisa: SISAConfig = Field(default_factory=SISAConfig)
    audit: bool = Field(True, description="probe, relearn and noise checks per method (data/unlearn/metrics.json)")
    relearn_epochs: int = Field(2, ge=0, le=1000, description=(
        "relearning check: fine-tune each unlearned model and retrain on D_r alone for this many epochs and report "
        "how much forget accuracy comes back against retrain (refinery/unlearn/relearn.py); 0 turns it off"))
    select_lr: bool = Field(True, description=(
        "choose each trained method's LR from its lr_grid by the smallest Avg.Gap to retrain on a VALIDATION "
        "request drawn from the training split (never the reported forget set, never the test split); "
        "recorded under 'selection' in data/unlearn/metrics.json"))

    @model_validator(mode="after")
    def _methods_are_distinct(self) -> UnlearnConfig:
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
    seed: int = Field(0, ge=0, le=2**31 - 1, description=(
        "the data seed (split, forget request) and, without `seeds`, the training seed"))
    seeds: list[int] | None = Field(None, description=(
        "a seed group: the pipeline trains once per seed (data/seeds/<seed>/), over the one split and forget "
        "request that `seed` draws, and the report gives means, 95% CIs and paired verdicts over the seeds"))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1, le=1024, description=(
        "CPU threads each stage computes with: results differ with the count, so it is fixed here, not by the machine"))
    data: DataConfig = Field(default_factory=DataConfig)
    forget: ForgetConfig = Field(default_factory=ForgetConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    upcycle: UpcycleConfig = Field(default_factory=UpcycleConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    unlearn: UnlearnConfig = Field(default_factory=UnlearnConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


    @field_validator("seeds")
    @classmethod
    def _seed_group(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is None:
            return None
        if len(seeds) < 2:
            raise ValueError("a seed group needs at least two seeds (for one, set `seed` and leave `seeds` out)")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds has duplicates: {seeds}")
        if any(s < 0 or s > 2**31 - 1 for s in seeds):
            raise ValueError(f"seeds must lie in 0..2**31-1, got {seeds}")
        return seeds
