"""Evaluation metrics (METHODS.md, "Evaluation" and "Unlearning"), one module each, imported
by name so that a stage depends only on the metrics it uses:
- `classification`: quality and calibration (Guo et al. 2017);
- `unlearning`: the SalUn / Unlearn-Sparse unlearning scores;
- `cost`: parameters, active parameters, FLOPs, latency, throughput.
"""
