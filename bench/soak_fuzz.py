"""Fuzz and fault soak: the suite of ``tests/test_fuzz_readers.py`` and ``tests/test_fuzz_faults.py``
with many more cases than CI runs.

Every reader (append lines, import formats, segment frames, remote manifests, bundles) gets
``--examples`` mutated inputs (hypothesis, derandomized: ``--seed`` picks another sequence),
and each of ``append``, ``import``, ``push``, ``pull`` and ``replay`` is SIGKILLed ``--trials``
times; the counts (cases tried, handled; trials, killed) are printed as the tests print them.
A reader that fails stops its own test (hypothesis shows the shrunk case); the others go on.

Usage: python bench/soak_fuzz.py [--examples 500] [--trials 20] [--only readers|faults]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=500, help="mutated inputs per reader")
    ap.add_argument("--trials", type=int, default=20, help="SIGKILLs per command")
    ap.add_argument("--only", choices=["readers", "faults"], default=None)
    args = ap.parse_args()
    files = {"readers": ["tests/test_fuzz_readers.py"], "faults": ["tests/test_fuzz_faults.py"]}
    targets = files[args.only] if args.only else files["readers"] + files["faults"]
    env = {**os.environ, "AGTRACE_FUZZ_EXAMPLES": str(args.examples), "AGTRACE_FAULT_TRIALS": str(args.trials)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *targets]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
