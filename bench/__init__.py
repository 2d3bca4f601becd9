"""Benchmarks: speed ratios measured side by side in one run; quality tables. Each prints its
figure on its last line. Importing the package applies the CLI's process settings first."""
from refinery.runtime import configure_cpu

configure_cpu()
