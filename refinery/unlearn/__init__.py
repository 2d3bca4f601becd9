"""Machine unlearning: given a trained model and a forget set D_f, produce a model that behaves
as if it had never seen D_f.

Methods (one per module, chosen by name through `run_method`):
- `retrain`  (retrain.py)  — exact: the model's own recipe on D_r only (the gold standard);
- `finetune` (finetune.py) — FT: fine-tune the original on D_r at a constant LR;
- `ssd`      (ssd.py)      — Selective Synaptic Dampening: no training, dampens the weights
  important to D_f (the reference code's importance by default, the per-sample Fisher as an option);
- `lfssd`    (lfssd.py)    — label-free SSD: importance from |grad ||f(x)||^2|;
- `grad_ascent` (grad_ascent.py) — GA: maximise CE on D_f;
- `random_label` (random_label.py) — RL: wrong labels on D_f, plus D_r;
- `salun`    (salun.py)    — SalUn: RL on the weights most salient to D_f only;
- `sisa`     (sisa.py)     — exact: sharded, sliced ensemble; a deletion retrains what saw it.

`audit.py` holds the checks beyond the papers (probe, relearn, noisy inputs); `selection.py`
chooses a method's hyperparameter on the validation split.

The method functions live in their modules (`refinery.unlearn.ssd.ssd`); they are not
re-exported here so that the module names stay modules.
"""
from . import finetune, grad_ascent, lfssd, random_label, retrain, salun, sisa, ssd  # noqa: F401  (registers)
from .base import METHODS, UnlearnContext, register, run_method
from .ssd import dampen, importance

__all__ = ["METHODS", "UnlearnContext", "dampen", "importance", "register", "run_method"]
