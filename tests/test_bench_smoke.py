"""The scale benchmark still runs (issue 14): every measure of ``bench/bench_scale.py``, at a
toy scale, to the end. Nothing here is timed; the numbers are the benchmark's to print.

A refactor broke it unseen once: ``bench_cold_replay`` read blobs through a private lookup
that a later fix made refuse anything but a tree, and the cold-replay measure died with a
traceback the next time someone measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--rounds", "3", "--events", "2000", "--parts", "200", "--runs", "100", "--replay-files", "50",
       "--replay-mb", "1", "--snapshot-files", "200", "--snapshot-mb", "2", "--snapshot-edits", "3",
       "--capture-files", "50", "--capture-parts", "5", "--capture-small", "3", "--shadow-parts", "10",
       "--shadow-files", "50"]


@pytest.mark.slow
def test_every_measure_of_the_scale_benchmark_runs_to_the_end(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_scale.py"), *TOY, "--json"],
                          capture_output=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    rows = json.loads(proc.stdout)
    measured = {r["measure"] for r in rows}
    said = proc.stderr.decode()
    expected = {line.split("]")[0][1:] for line in said.splitlines() if line.startswith("[") and "measuring" in line}
    assert expected and measured == expected, (measured, expected)
    assert all(r["value"] is not None for r in rows), [r for r in rows if r["value"] is None]
