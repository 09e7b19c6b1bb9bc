"""Several workers on one study: who owns a running trial, and whether that owner is alive.

A running trial is another worker's while its owner is alive: a process on this machine that
still exists, or a heartbeat (a user attribute refreshed every ``HEARTBEAT`` seconds) younger than
``STALE_AFTER``; a dead owner's trial is marked failed by whichever worker looks next.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from typing import Any

import optuna

# Liveness of a running trial (several workers): refreshed every HEARTBEAT seconds, its owner is
# taken for dead when the last refresh is older than STALE_AFTER (or, on the same machine, when its
# process is gone). WAIT_POLL: how often a worker whose budget is spent looks at the others again.
HEARTBEAT, STALE_AFTER, WAIT_POLL = 20.0, 120.0, 2.0

_ACTIVE: set[str] = set()  # tokens of the drivers of this process that are running a trial


def owner_attrs(token: str) -> dict[str, Any]:
    return {"machine": _machine_id(), "pid": os.getpid(), "token": token,
            "host": socket.gethostname(), "alive": time.time()}


def _machine_id() -> str | None:
    """This kernel and PID namespace (pids are comparable within it), or None off Linux."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def owner_alive(attrs: dict[str, Any], started: Any) -> bool:
    """Whether the worker that runs a trial is alive (see the module docstring)."""
    owner = attrs.get("owner")
    if owner is None:  # asked, not yet claimed: alive only while young
        import datetime

        age = abs((datetime.datetime.now() - started).total_seconds()) if started else math.inf
        return age < STALE_AFTER
    beat = float(attrs.get("alive", owner.get("alive", 0.0)))
    here = _machine_id()
    if here is not None and owner.get("machine") == here:
        if owner.get("pid") == os.getpid():
            return owner.get("token") in _ACTIVE
        return _pid_alive(int(owner.get("pid", 0)))
    return time.time() - beat < STALE_AFTER


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


class Heartbeat:
    """While a trial runs: refresh its ``alive`` attribute every ``HEARTBEAT`` seconds."""

    def __init__(self, trial: optuna.Trial, token: str) -> None:
        self.trial, self.token = trial, token
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="trial-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT):
            try:
                self.trial.set_user_attr("alive", time.time())
            except Exception:  # noqa: BLE001 - finished or storage gone: nothing left to do
                return

    def __enter__(self) -> Heartbeat:
        _ACTIVE.add(self.token)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        _ACTIVE.discard(self.token)
