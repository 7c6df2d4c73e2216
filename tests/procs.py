"""Processes a test started, found and ended by pid (never by matching command lines)."""

from __future__ import annotations

import os
import signal
import time


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read().decode()
        except OSError:
            continue
        out[int(entry)] = int(data[data.rindex(")") + 2 :].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, …)."""
    ppids = _ppids()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in ppids.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode()
    except OSError:
        return False
    return data[data.rindex(")") + 2 :].split()[0] != "Z"


def end(pids: list[int], grace: float = 10.0) -> list[int]:
    """Wait up to ``grace`` seconds for ``pids`` to exit by themselves, then SIGKILL (and
    SIGCONT, in case one was left stopped) those left. Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    killed = [p for p in pids if alive(p)]
    for p in killed:
        for sig in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
    return killed
