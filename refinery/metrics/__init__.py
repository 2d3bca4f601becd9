"""Evaluation metrics (METHODS.md, "Evaluation" and "Unlearning"): classification quality and
calibration (Guo et al. 2017), the SalUn / Unlearn-Sparse unlearning scores, and inference
cost (parameters, active parameters, FLOPs, latency, throughput)."""
from __future__ import annotations

from .classification import accuracy, ece, nll, reliability_table
from .cost import active_params, cost_report, count_params, flops_per_sample, latency_ms, throughput
from .unlearning import SCORE_KEYS, avg_gap, confidence, mia_efficacy, unlearning_scores

__all__ = ["SCORE_KEYS", "accuracy", "active_params", "avg_gap", "confidence", "cost_report", "count_params",
           "ece", "flops_per_sample", "latency_ms", "mia_efficacy", "nll", "reliability_table", "throughput",
           "unlearning_scores"]
