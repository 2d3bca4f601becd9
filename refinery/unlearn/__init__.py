"""Machine unlearning: given a trained model and a forget set D_f, produce a model that behaves
as if it had never seen D_f.

Methods (one per module, chosen by name through `run_method`):
- `retrain`  (retrain.py)  — exact: the model's own recipe on D_r only (the gold standard);
- `finetune` (finetune.py) — FT: fine-tune the original on D_r at a constant LR;
- `ssd`      (ssd.py)      — Selective Synaptic Dampening: no training, dampens the weights
  important to D_f. `importance` computes I_D once for the caller to cache.

The method functions live in their modules (`refinery.unlearn.ssd.ssd`); they are not
re-exported here so that the module names stay modules.
"""
from . import finetune, retrain, ssd  # noqa: F401  (importing registers the methods)
from .base import METHODS, UnlearnContext, register, run_method
from .ssd import dampen, importance

__all__ = ["METHODS", "UnlearnContext", "dampen", "importance", "register", "run_method"]
