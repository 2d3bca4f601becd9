"""Benchmarks: speed ratios measured side by side in one run; quality tables. Each prints its
figure on its last line. Importing the package applies the CLI's process settings first
and turns progress bars off."""
import os

from refinery.runtime import configure_cpu

configure_cpu()
os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures
