"""Any backbone can be the student of any teacher: heterogeneous pairs train through every loss."""
import pytest
import torch

from refinery.config import TrainConfig
from refinery.data.dataset import Arrays
from refinery.distill import LOSSES, TeacherTable, attached, make_loss
from refinery.train import Hooks, fit, predict_logits

from .helpers import cfg, student


@pytest.mark.parametrize("teacher_arch,student_arch", [("cct", "mlp"), ("mlp", "cct")])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_heterogeneous_pair_trains(teacher_arch, student_arch, loss_name):
    data = Arrays(torch.randn(48, 1, 8, 8), torch.randint(0, 10, (48,)), torch.arange(48))
    teacher, _ = student(teacher_arch)
    logits = predict_logits(teacher, data.x)
    experts = torch.stack([logits, logits.flip(1)], 1)  # two stand-in expert paths
    lookup = TeacherTable.from_rows(data.ids, logits, experts, 48, "cpu")
    model, _ = student(student_arch)
    loss = make_loss(cfg(loss=loss_name), lookup)
    with attached(model, loss):
        result = fit(model, data, TrainConfig(epochs=2, batch_size=16), seed=0, hooks=Hooks(loss=loss))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    assert predict_logits(model, data.x).shape == (48, 10)
