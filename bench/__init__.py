"""Benchmarks: speed ratios measured side by side in one run; quality tables. Each prints its
figure on its last line. Importing the package applies the CLI's process settings first
and turns progress bars off."""
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: bars would interleave with the figures

from refinery.runtime import configure_cpu  # noqa: E402

configure_cpu()
