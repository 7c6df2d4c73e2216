"""The supervisor: a small process beside the agent that thaws it when the capture cannot.

The capture freezes the agent's process group (SIGSTOP) while it snapshots a part. If the
capture process dies meanwhile (SIGKILL, OOM, a crash) or stops being scheduled (it was itself
stopped), nothing inside it can send the SIGCONT. So, as soon as the agent runs, the capture
starts :data:`SCRIPT` (bash, run where the agent runs: on this machine or in the sandbox) and
keeps a pipe to its stdin. The protocol on that pipe is one letter per line:

======  ======================================================================================
``F``   the group is frozen now; if no ``T`` comes within the freeze deadline, the supervisor
        sends SIGCONT itself (a backstop: the capture's own deadline normally comes first)
``T``   the group was thawed
``K``   keep-alive (only where a lease is used, see below)
``Q``   the capture is done with the agent: exit quietly
EOF     the capture is gone: SIGCONT the group, send the stop signal (SIGTERM unless
        configured), SIGCONT again (a stopped process sees the signal only when continued),
        and SIGKILL whatever is left of the group after the grace period; then exit
======  ======================================================================================

Where the end of the capture process cannot be seen as an end of file (a Modal sandbox keeps a
command's stdin open when the client goes away), the supervisor is started with a lease: when
neither a command nor a ``K`` came for ``lease`` seconds, it acts as on EOF. Locally the lease is
off, so a capture that is merely suspended (Ctrl-Z) never has its agent stopped.

The supervisor ignores the terminal's signals (INT, HUP, TERM, TSTP…) and runs in its own
session, so a Ctrl-C that kills the capture still leaves it to clean up. Known limit: between the
agent's exit and the capture's own end, the group id could in principle be reused by an unrelated
new group; :meth:`Supervisor.release` is sent as soon as the agent has exited to keep that window
to the capture's final bookkeeping.
"""

from __future__ import annotations

import threading
from typing import Protocol

SCRIPT = r"""
trap '' INT HUP TERM QUIT TSTP TTIN TTOU PIPE
ref=$1 deadline=$2 grace_tenths=$3 stop=$4 lease=$5
pg=
group() {
  if [ -z "$pg" ]; then
    case $ref in
      @*) [ -s "${ref#@}" ] && read -r pg < "${ref#@}" ;;
      *) pg=$ref ;;
    esac
  fi
  [ -n "$pg" ] && kill "$1" -- "-$pg" 2>/dev/null
}
frozen=0
while :; do
  if [ "$frozen" = 1 ]; then t=$deadline; else t=$lease; fi
  if [ "$t" = 0 ]; then IFS= read -r cmd; rc=$?; else IFS= read -r -t "$t" cmd; rc=$?; fi
  if [ "$rc" -gt 128 ]; then
    if [ "$frozen" = 1 ]; then group -CONT; frozen=0; continue; fi
    break
  fi
  [ "$rc" = 0 ] || break
  case $cmd in
    F) frozen=1 ;;
    T) frozen=0 ;;
    Q) exit 0 ;;
  esac
done
group -CONT
group "-$stop"
group -CONT
i=0
while [ "$i" -lt "$grace_tenths" ] && group -0; do sleep 0.1; i=$((i + 1)); done
group -KILL
exit 0
"""
"""The supervisor, for ``bash -c SCRIPT supervisor GROUP DEADLINE GRACE_TENTHS STOP LEASE``:
GROUP is a process group id or ``@FILE`` naming a file that holds it (read when first needed)."""


class Channel(Protocol):
    """The write end of the supervisor's stdin."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def supervisor_argv(group: str, *, deadline_s: float, grace_s: float, stop_signal: str,
                    lease_s: float = 0.0) -> list[str]:
    """The command line that runs :data:`SCRIPT` for ``group`` (see the module docstring)."""
    return ["bash", "-c", SCRIPT, "agtrace-supervisor", group, _seconds(deadline_s),
            str(max(0, round(grace_s * 10))), stop_signal, _seconds(lease_s)]


def _seconds(value: float) -> str:
    return "0" if value <= 0 else f"{value:.3f}".rstrip("0").rstrip(".")


class Supervisor:
    """The capture's end of the protocol. Thread-safe; every method is a no-op once the
    channel broke (the supervisor was killed: the capture goes on unguarded, see ``broken``)."""

    def __init__(self, channel: Channel):
        self._channel: Channel | None = channel
        self._mu = threading.Lock()
        self.broken = ""
        """Why the channel no longer works ("" while it does)."""

    def frozen(self) -> None:
        self._send(b"F\n")

    def thawed(self) -> None:
        self._send(b"T\n")

    def keep_alive(self) -> None:
        self._send(b"K\n")

    def release(self) -> None:
        """The capture is done with the agent: the supervisor leaves quietly."""
        self._send(b"Q\n")
        self.hand_over()

    def hand_over(self) -> None:
        """Close the channel without ``Q``: the supervisor stops the group as if the capture
        had died (used when a stop is under way and this process is about to exit)."""
        with self._mu:
            channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - a supervisor that is gone needs no goodbye
                pass

    def _send(self, data: bytes) -> None:
        with self._mu:
            if self._channel is None:
                return
            try:
                self._channel.write(data)
            except Exception as exc:  # noqa: BLE001 - any failure means the supervisor is gone
                self.broken = f"{type(exc).__name__}: {exc}"
                self._channel = None
