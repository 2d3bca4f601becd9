import pytest
import torch
import torch.nn.functional as F

from refinery.config import DistillConfig, TrainConfig
from refinery.data.dataset import Arrays
from refinery.distill import TeacherTable, attached, make_loss
from refinery.distill.multi_teacher import expert_logits, forced_expert, mixture_targets
from refinery.models import attach_moe, build_model, make_arch, moe_layers
from refinery.train import Hooks, accuracy, fit, predict_logits

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
    routed = predict_logits(model, x)  # the MoE's own top-2 routing, before any forcing
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
    after = predict_logits(model, x)
    assert torch.allclose(after, routed, atol=1e-6)  # the model routes as before the forcing
    for e in range(3):  # and no longer as any forced path (the last one forced was expert 2)
        assert not torch.allclose(after, per_expert[:, e], atol=1e-3)
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


def specialised_experts(num_experts=3, classes=4, n=480, seed=0):
    """Synthetic data whose input says which of `num_experts` regions a sample is in (a one-hot
    block), with labels from a fixed linear rule on the rest. Expert e is a confident, correct
    teacher in its own region and systematically wrong elsewhere (it predicts label + 1)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(classes, 60, generator=torch.Generator().manual_seed(99))

    def split(count, first_id):
        region = torch.randint(0, num_experts, (count,), generator=g)
        feats = torch.randn(count, 60, generator=g)
        x = torch.cat([F.one_hot(region, num_experts) * 3.0, torch.zeros(count, 1), feats], 1)
        ids = torch.arange(first_id, first_id + count)
        return Arrays(x.view(count, 1, 8, 8), (feats @ prototypes.T).argmax(1), ids), region

    train, region = split(n, 0)
    test, _ = split(n, n)
    experts = torch.stack([4.0 * F.one_hot(torch.where(region == e, train.y, (train.y + 1) % classes), classes).float()
                           for e in range(num_experts)], dim=1)
    return train, test, experts


def distilled_accuracy(loss_name, lookup, train, test, classes):
    torch.manual_seed(0)
    model = build_model(make_arch({"arch": "mlp", "dim": 32, "depth": 1, "dropout": 0.0}, (1, 8, 8), classes))
    train_cfg = TrainConfig(epochs=10, batch_size=32, lr=3e-3)
    loss = make_loss(cfg(loss=loss_name, train=train_cfg), lookup)
    with attached(model, loss):
        fit(model, train, train_cfg, seed=0, hooks=Hooks(loss=loss))
    return accuracy(model, test)


def test_routed_experts_teach_better_than_the_best_single_expert():
    """METHODS.md: the student distilled from the routed experts beats the best single expert as
    a teacher, where the experts are specialised. Here each expert alone teaches a wrong rule on
    two thirds of the inputs (test accuracy ~0.3); the router learns from the labels which expert
    to trust where (~0.7)."""
    train, test, experts = specialised_experts()
    n = len(train)
    single = [distilled_accuracy("kd", TeacherTable.from_rows(train.ids, experts[:, e], None, n, "cpu"), train, test, 4)
              for e in range(experts.shape[1])]
    routed = distilled_accuracy("multi_teacher", TeacherTable.from_rows(train.ids, experts.mean(1), experts, n, "cpu"),
                                train, test, 4)
    assert routed > max(single) + 0.15, (routed, single)
