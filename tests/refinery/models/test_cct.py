"""CCT on images and signals, and the gated-attention option."""
import torch

from refinery.config import ModelConfig
from refinery.models import build_model, make_arch
from refinery.models.blocks import SelfAttention

torch.set_num_threads(1)


def test_cct_takes_images_and_signals():
    for shape in ((1, 8, 8), (1, 40)):
        model = build_model(make_arch(ModelConfig(dim=16, heads=2).model_dump(), shape, 10))
        assert model(torch.randn(3, *shape)).shape == (3, 10)
        assert model.head(model.features(torch.randn(3, *shape))).shape == (3, 10)


def test_gate_with_large_bias_is_plain_attention():
    torch.manual_seed(0)
    plain, gated = SelfAttention(16, 4), SelfAttention(16, 4, gated=True)
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        gated.gate.bias.fill_(40.0)  # sigmoid(40) = 1 in float32
        assert torch.allclose(gated(x), plain(x), atol=1e-6)
        gated.gate.bias.zero_()
        assert not torch.allclose(gated(x), plain(x), atol=1e-3)


def test_gate_is_elementwise_per_head_from_the_query_input():
    attn = SelfAttention(16, 4, gated=True)
    assert attn.gate.in_features == 16 and attn.gate.out_features == 16  # one gate per head channel
    model = build_model(make_arch(ModelConfig(dim=16, heads=4, gated_attention=True).model_dump(), (1, 40), 10))
    assert all(b.attn.gate is not None for b in model.blocks)
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
