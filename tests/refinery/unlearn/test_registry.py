import pytest
import torch

from refinery.config import UnlearnConfig
from refinery.unlearn import METHODS, register, run_method

from .helpers import random_forget_ids


def test_unknown_method_names_the_known_ones(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    with pytest.raises(ValueError) as err:
        run_method("gradient_magic", ctx)
    msg = str(err.value)
    assert "gradient_magic" in msg
    for name in ("retrain", "finetune", "ssd"):
        assert name in msg


def test_the_config_accepts_exactly_the_registered_methods():
    assert set(METHODS) == {"retrain", "finetune", "ssd", "grad_ascent", "random_label", "salun", "lfssd", "sisa"}
    assert UnlearnConfig(methods=sorted(METHODS)).methods == sorted(METHODS)
    with pytest.raises(ValueError, match="unknown unlearning method"):
        UnlearnConfig(methods=["retrain", "wishful"])


def test_run_method_dispatches_and_rejects_returning_the_original(make_ctx, digits):
    ctx = make_ctx(random_forget_ids(digits[0]))
    calls = []

    @register("_test_identity")
    def identity(c):
        calls.append(c)
        return c.model

    try:
        with pytest.raises(RuntimeError, match="original"):
            run_method("_test_identity", ctx)
        assert calls == [ctx]
    finally:
        METHODS.pop("_test_identity")


def test_register_refuses_a_second_function_under_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        register("ssd")(lambda ctx: torch.nn.Identity())
