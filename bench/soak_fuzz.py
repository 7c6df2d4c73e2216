"""Fuzz and fault soak: the suite of ``tests/test_fuzz_readers.py`` and ``tests/test_fuzz_faults.py``
with many more cases than CI runs.

Every reader (append lines, import formats, segment frames, remote manifests, bundles) gets
``--examples`` mutated inputs (hypothesis, derandomized: ``--seed`` picks another sequence),
and each of ``append``, ``import``, ``push``, ``pull`` and ``replay`` is SIGKILLed ``--trials``
times; ``run`` is SIGKILLed at random moments of its snapshots 120 times (``--only run``:
``tests/test_freeze.py``'s soak, ≥ 100 trials as issue 12 asks); the counts (cases tried,
handled; trials, killed) are printed as the tests print them.
A reader that fails stops its own test (hypothesis shows the shrunk case); the others go on.

Usage: python bench/soak_fuzz.py [--examples 500] [--trials 20] [--only readers|faults|run]
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
    ap.add_argument("--only", choices=["readers", "faults", "run"], default=None)
    args = ap.parse_args()
    files = {"readers": ["tests/test_fuzz_readers.py"], "faults": ["tests/test_fuzz_faults.py"],
             "run": ["tests/test_freeze.py::test_sigkill_of_the_capture_during_snapshots_soak"]}
    targets = files[args.only] if args.only else [t for ts in files.values() for t in ts]
    env = {**os.environ, "AGTRACE_FUZZ_EXAMPLES": str(args.examples), "AGTRACE_FAULT_TRIALS": str(args.trials)}
    # -s: test_freeze prints its counts to stdout; -rs names a skipped test's reason (the full disk)
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-rs", "-n", "0", "-p", "no:cacheprovider", *targets]
    return subprocess.call(cmd, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
