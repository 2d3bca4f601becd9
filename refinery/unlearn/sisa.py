"""SISA (Sharded, Isolated, Sliced, Aggregated) training: Bourtoule et al., "Machine
Unlearning", IEEE S&P 2021 (arXiv:1912.03817), Sections IV-A..IV-D.

Exact unlearning by construction. The training set is split into S disjoint shards, each shard
into R disjoint slices; member model k is trained incrementally on slices 1..r of shard k for
r = 1..R, with a checkpoint after each slice. The ensemble's prediction averages the members'
softmax outputs (the paper's aggregation by label-vector averaging):

    p(y | x) = 1/S * sum_k softmax(f_k(x))

Deleting sample i of shard k, slice r: reload member k's checkpoint after slice r-1 and retrain
slices r..R without i; every other member is kept. A sample's shard and slice are a hash of
(seed, sample id) alone, so the result is bit-identical to training the ensemble from scratch
without the deleted samples.

The ensemble is an nn.Module (`SISAEnsemble`); its arch record is the member's arch plus
`{"ensemble": {"shards": S, "slices": R}}`, which `refinery.models.build_model` rebuilds
without pickle.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.dataset import Arrays
from ..models import build_model, register_ensemble
from ..store import load_checkpoint, save_checkpoint
from ..train import Hooks, cross_entropy_loss, fit
from .base import UnlearnContext, register

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        v = (v + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        v = ((v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        v = ((v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return v ^ (v >> np.uint64(31))


def assignment(ids: np.ndarray, seed: int, shards: int, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """(shard, slice) of each sample id: a function of (seed, id) only, never of the other samples."""
    h = _splitmix64(np.asarray(ids, dtype=np.uint64) ^ _splitmix64(np.array([seed], dtype=np.uint64)))
    return (h % np.uint64(shards)).astype(np.int64), ((h // np.uint64(shards)) % np.uint64(slices)).astype(np.int64)


class SISAEnsemble(nn.Module):
    """S member models; the output is log(mean softmax), so softmax(output) is the averaged vote."""

    def __init__(self, members: list[nn.Module], arch: dict | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.arch = arch  # the record build_model rebuilds it from (saved with its checkpoint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([m(x).float().softmax(dim=-1) for m in self.members]).mean(0)
        return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features(x) for m in self.members], dim=-1)


def ensemble_arch(member_arch: dict, shards: int, slices: int) -> dict:
    return dict(member_arch, ensemble={"kind": "sisa", "shards": int(shards), "slices": int(slices)})


def build_ensemble(arch: dict) -> SISAEnsemble:
    """What `build_model` calls for an arch with an "ensemble" entry."""
    member = {k: v for k, v in arch.items() if k != "ensemble"}
    return SISAEnsemble([build_model(member) for _ in range(int(arch["ensemble"]["shards"]))], arch)


register_ensemble("sisa", build_ensemble)  # so build_model rebuilds a saved ensemble from its arch record


@dataclass
class SISADeployment:
    """A trained ensemble plus member k's weights after each slice r: checkpoints[(k, r)]."""

    model: SISAEnsemble
    arch: dict
    checkpoints: dict[tuple[int, int], dict[str, torch.Tensor]] = field(default_factory=dict)
    seconds: float = 0.0


def slice_recipe(cfg: TrainConfig, slices: int) -> TrainConfig:
    """The paper spreads the epochs over the slices; each slice stage gets ceil(epochs / R)."""
    return TrainConfig.model_validate(dict(cfg.model_dump(), epochs=max(1, math.ceil(cfg.epochs / slices))))


def _member_seed(seed: int, shard: int, stage: int) -> int:
    return (seed * 1_000_003 + shard * 1009 + stage) % (2**31 - 1)


def _train_member(deployment: SISADeployment, data: Arrays, shard: int, first_slice: int,
                  cfg: TrainConfig, seed: int, device: torch.device) -> None:
    """(Re)train member `shard` from slice `first_slice` on; record the new slice checkpoints."""
    ens = deployment.arch["ensemble"]
    member_arch = {k: v for k, v in deployment.arch.items() if k != "ensemble"}
    torch.manual_seed(_member_seed(seed, shard, -1))
    member = build_model(member_arch).to(device)
    if first_slice > 0:
        member.load_state_dict(deployment.checkpoints[(shard, first_slice - 1)])
    k, r = assignment(data.ids.cpu().numpy(), seed, ens["shards"], ens["slices"])
    recipe, loss = slice_recipe(cfg, ens["slices"]), cross_entropy_loss(cfg.label_smoothing)
    for stage in range(first_slice, ens["slices"]):
        part = data.subset((k == shard) & (r <= stage))
        if len(part):
            fit(member, part, recipe, seed=_member_seed(seed, shard, stage), hooks=Hooks(loss=loss),
                params=member.parameters(), desc=f"sisa shard {shard} slice {stage}")
        deployment.checkpoints[(shard, stage)] = {n: t.detach().clone() for n, t in member.state_dict().items()}
    deployment.model.members[shard] = member.eval()


def deploy(arch: dict, data: Arrays, cfg: TrainConfig, seed: int, shards: int, slices: int,
           device: torch.device | str = "cpu") -> SISADeployment:
    """Train the SISA ensemble on `data` from scratch (what a deployment does once)."""
    import time

    started = time.perf_counter()
    full_arch = ensemble_arch({k: v for k, v in arch.items() if k != "ensemble"}, shards, slices)
    deployment = SISADeployment(build_ensemble(full_arch).to(device), full_arch)
    for shard in range(shards):
        _train_member(deployment, data, shard, 0, cfg, seed, torch.device(device))
    deployment.seconds = time.perf_counter() - started
    return deployment


def delete(deployment: SISADeployment, retain: Arrays, forget_ids: np.ndarray, cfg: TrainConfig,
           seed: int) -> SISADeployment:
    """A new deployment without `forget_ids`: only the affected members retrain, from the
    earliest affected slice. `retain` is the training data left after the deletion."""
    ens = deployment.arch["ensemble"]
    out = SISADeployment(copy.deepcopy(deployment.model), deployment.arch, dict(deployment.checkpoints))
    device = next(out.model.parameters()).device
    k, r = assignment(np.asarray(forget_ids), seed, ens["shards"], ens["slices"])
    for shard in sorted(set(k.tolist())):
        _train_member(out, retain, shard, int(r[k == shard].min()), cfg, seed, device)
    return out


@register("sisa")
def sisa(ctx: UnlearnContext, deployment: SISADeployment | None = None) -> nn.Module:
    """Delete D_f from a SISA deployment trained on D = D_r ∪ D_f (trained here if not given;
    the caller caches it, as it is the deployed model, not part of the request)."""
    cfg = ctx.cfg.sisa
    if deployment is None:
        deployment = deploy(ctx.arch, ctx.full(), ctx.train_cfg, ctx.seed, cfg.shards, cfg.slices, ctx.device)
    return delete(deployment, ctx.retain, ctx.forget.ids.cpu().numpy(), ctx.train_cfg, ctx.seed).model


# --------------------------------------------------------------------------- caching
def deployment_key(arch: dict, data: Arrays, cfg: TrainConfig, seed: int, shards: int, slices: int) -> str:
    h = hashlib.sha256(json.dumps([arch, cfg.model_dump(mode="json"), seed, shards, slices], sort_keys=True).encode())
    for t in (data.ids, data.y, data.x):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def save_deployment(path: Path, deployment: SISADeployment) -> None:
    tensors = {f"{k}/{r}/{n}": t for (k, r), state in deployment.checkpoints.items() for n, t in state.items()}
    save_checkpoint(path, tensors, deployment.arch, packed=True, extra={"seconds": deployment.seconds})


def load_deployment(path: Path, device: torch.device | str = "cpu") -> SISADeployment:
    tensors, attrs = load_checkpoint(path)
    arch, ens = attrs["arch"], attrs["arch"]["ensemble"]
    checkpoints: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        k, r, param = name.split("/", 2)
        checkpoints.setdefault((int(k), int(r)), {})[param] = t.to(device)
    model = build_ensemble(arch).to(device)
    for shard in range(ens["shards"]):
        model.members[shard].load_state_dict(checkpoints[(shard, ens["slices"] - 1)])
    return SISADeployment(model.eval(), arch, checkpoints, float(attrs.get("extra", {}).get("seconds", 0.0)))
