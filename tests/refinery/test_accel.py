"""The loop's device plan: bf16 autocast, channels_last, torch.compile, data placement."""
from __future__ import annotations


import torch
import torch.nn.functional as F

from refinery import accel as A
from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.models import build_model, make_arch
from refinery.train import Hooks, fit

CPU = torch.device("cpu")


def images(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 8, 8, generator=g)  # C > 1, or channels_last would equal contiguous
    return Arrays(x, (x.mean(dim=(1, 2, 3)) > 0.5).long(), torch.arange(n))


def recording_loss(seen: dict):
    def loss(model, x, y, ids, at=None):
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["channels_last"] = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        seen["runner"] = type(model).__name__
        logits = model(x)
        seen["logits_dtype"] = logits.dtype
        return F.cross_entropy(logits.float(), y)
    return loss


def run(cfg: TrainConfig, arch_name="cct") -> tuple[dict, torch.nn.Module]:
    torch.manual_seed(0)
    arch = make_arch({"arch": arch_name, "dim": 16, "depth": 1, "heads": 2, "conv_channels": 8}, (3, 8, 8), 2)
    model, seen = build_model(arch), {}
    fit(model, images(), cfg, seed=0, hooks=Hooks(loss=recording_loss(seen)))
    return seen, model


def test_auto_on_the_cpu_is_plain_fp32_with_resident_data():
    plan = A.plan(TrainConfig(), CPU, images())
    assert plan == A.Accel(CPU, bf16=False, channels_last=False, resident=True, compile=False)
    seen, _ = run(TrainConfig(epochs=1, batch_size=32))
    assert seen == {"autocast": False, "channels_last": False, "runner": "CCT", "logits_dtype": torch.float32}


def test_bf16_autocast_runs_the_forward_in_bf16():
    seen, model = run(TrainConfig(epochs=1, batch_size=32, precision="bf16"))
    assert seen["autocast"] and seen["logits_dtype"] == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_channels_last_reaches_the_batch_and_the_convolutions():
    seen, model = run(TrainConfig(epochs=1, batch_size=32, channels_last=True))
    assert seen["channels_last"]
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert A.plan(TrainConfig(channels_last=True), CPU, Arrays.from_numpy(*[t.numpy() for t in
                  (torch.rand(4, 1, 8), torch.zeros(4, dtype=torch.long))])).channels_last is False  # 1-D input


def test_compile_trains_through_the_compiled_module_and_saves_the_plain_one(tmp_path):
    seen, model = run(TrainConfig(epochs=1, batch_size=32, compile=True), arch_name="mlp")
    assert seen["runner"] == "OptimizedModule"
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())


def test_the_dataset_stays_on_the_device_only_when_it_fits():
    assert A.fits_on_device(100, 1000) and not A.fits_on_device(600, 1000)
