import pytest
import torch

from refinery.config import DistillConfig
from refinery.distill import attached, make_loss
from refinery.distill.multi_teacher import expert_logits, forced_expert, mixture_targets
from refinery.models import attach_moe, moe_layers
from refinery.train import predict_logits

from .helpers import cfg, student, table


def moe_teacher(experts=3):
    model, _ = student("mlp")
    attach_moe(model, {"num_experts": experts, "top_k": 2})
    with torch.no_grad():  # make the experts differ, as after upcycle training
        for m in moe_layers(model):
            m.w1.add_(torch.randn_like(m.w1) * 0.5)
    return model.eval()


def test_forced_routing_equals_running_one_expert_alone():
    model = moe_teacher()
    x = torch.randn(6, 1, 8, 8)
    per_expert = expert_logits(model, x)
    assert per_expert.shape == (6, 3, 10)
    moe = moe_layers(model)[0]
    # the dense path through expert 1: the same model with the MoE replaced by expert 1's FFN
    with forced_expert(model, 1):
        h = model.embed(x.flatten(1)).unsqueeze(1)
        block = model.blocks[0]
        h = h + moe._expert(1, block.norm2(h).reshape(-1, h.shape[-1])).view_as(h)
        dense = model.head(model.norm(h.squeeze(1)))
    assert torch.allclose(per_expert[:, 1], dense, atol=1e-5)
    assert "route" not in vars(moe)  # routing restored
    assert torch.allclose(predict_logits(model, x), predict_logits(model, x))
    assert not torch.allclose(per_expert[:, 0], per_expert[:, 2])


def test_dense_teacher_has_no_experts_and_the_loss_says_so():
    assert expert_logits(student()[0], torch.randn(2, 1, 8, 8)) is None
    with pytest.raises(ValueError, match="per-expert"):
        make_loss(cfg(loss="multi_teacher"), table())
    with pytest.raises(ValueError, match="upcycle"):
        DistillConfig(loss="multi_teacher", teacher="teacher")


def test_router_learns_from_the_label_and_is_dropped_at_inference():
    model, _ = student()
    keys = set(model.state_dict())
    loss = make_loss(cfg(loss="multi_teacher"), table(n=16, experts=3))
    with attached(model, loss):
        out = loss(model, torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)), torch.arange(16))
        out.backward()
        assert all(p.grad is not None for p in loss.router.parameters())
    assert set(model.state_dict()) == keys


def test_mixture_of_one_hot_weights_is_that_teacher():
    ex = torch.randn(4, 3, 10)
    w = torch.tensor([[0.0, 1.0, 0.0]]).expand(4, 3)
    assert torch.allclose(mixture_targets(ex, w, 2.0), torch.softmax(ex[:, 1] / 2.0, -1))
