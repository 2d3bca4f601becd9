"""CIFAR ResNets in the distillation widths (CRD / DKD: resnet8x4, resnet32x4)."""
import pytest
import torch

from refinery.config import ModelConfig
from refinery.models import build_model, count_params, make_arch

torch.set_num_threads(1)


@pytest.mark.parametrize("arch, params", [("resnet8x4", 1_233_540), ("resnet32x4", 7_433_860)])
def test_resnet_shapes_and_published_sizes(arch, params):
    model = build_model(make_arch(ModelConfig(arch=arch).model_dump(), (3, 32, 32), 100))
    assert count_params(model) == params  # resnet32x4 is the 7.43M teacher of the CIFAR-100 KD tables
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 100)
    model.eval()
    assert torch.equal(model(x), model.head(model.features(x)))


def test_resnet_on_signals_and_small_images():
    for shape in ((1, 40), (1, 8, 8)):
        model = build_model(make_arch(ModelConfig(arch="resnet8x4").model_dump(), shape, 10))
        assert model(torch.randn(2, *shape)).shape == (2, 10)
