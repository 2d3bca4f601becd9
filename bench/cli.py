"""How long `refinery --help` takes against importing what it used to import before parsing its
arguments (torch and prefect), side by side in paired rounds. Last line:
`cli: help_vs_heavy_imports=X` (X well under 1: `--help` no longer pays for torch and prefect),
with the median seconds of each."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from bench.timing import paired_ratio, paired_rounds

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run = lambda cmd: (lambda _r: subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True))  # noqa: E731
    seconds = paired_rounds({
        "help": run([str(ROOT / "bin" / "refinery"), "--help"]),
        "heavy_imports": run([sys.executable, "-c", "import torch, prefect"]),
    }, args.rounds)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"refinery --help {medians['help']:.2f}s, import torch+prefect {medians['heavy_imports']:.2f}s")
    print(f"cli: help_vs_heavy_imports={paired_ratio(seconds, 'help', 'heavy_imports'):.3f}")


if __name__ == "__main__":
    main()
