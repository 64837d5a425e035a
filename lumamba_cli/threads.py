"""How many threads torch and OpenMP get, and how idle OpenMP threads wait: chosen once per run, before torch loads.

Two facts drive the choice. OpenMP's default *spinning* wait is fastest when every thread has a core to itself, but
as soon as another program holds a core a spinning team waits for its slowest member: a training step that takes
1 s on an idle 2-core machine took 15–19 s beside one busy process. The *passive* wait costs about a fifth of the
model's throughput on an idle machine and avoids that collapse. So lumamba spins only when the machine is idle and
it runs one compute process; it waits passively when the machine is loaded or ``--jobs`` starts worker processes.
The benchmark scripts call the same :func:`configure` and print what it chose.

Cores "actually available" are the process's CPU affinity, capped by a cgroup CPU quota (containers, Slurm).
``OMP_WAIT_POLICY`` and ``OMP_NUM_THREADS`` set by the user are always respected.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "LUMAMBA_THREADS"


def available_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 (``cpu.max``) or v1 quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota() -> float | None:
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if limit != "max":
            return int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def other_load() -> float:
    """How many cores other programs keep busy: the larger of the runnable tasks now (less this process) and the
    1-minute load average. The first sees a competitor that started a second ago, the second one that just
    paused."""
    try:
        fields = Path("/proc/loadavg").read_text().split()
        runnable_now = int(fields[3].split("/")[0]) - 1
        return max(float(fields[0]), float(runnable_now))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def machine_busy(cores: int) -> bool:
    """Whether other programs already keep about half of our cores busy."""
    return other_load() >= 0.5 * cores


@dataclass(frozen=True)
class ThreadPlan:
    threads: int
    wait_policy: str  # "ACTIVE" (spin) or "PASSIVE"
    reason: str
    requested: bool = False  # asked for (--threads, $LUMAMBA_THREADS), not derived from the machine

    def describe(self) -> str:
        return f"{self.threads} thread(s), OMP_WAIT_POLICY={self.wait_policy} ({self.reason})"


_chosen: ThreadPlan | None = None


def configure(threads: int | None = None, *, jobs: int = 1) -> ThreadPlan:
    """Choose and apply threads and the OpenMP wait policy. The wait policy only takes effect if torch has not been
    imported yet (OpenMP reads it once); the thread count is applied to torch whenever torch is loaded."""
    global _chosen
    cores = available_cores()
    requested = threads or int(os.environ.get(THREADS_ENV, "0") or 0) or None
    count = requested or (int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit()
                          else cores)
    if "OMP_WAIT_POLICY" in os.environ:
        policy, reason = os.environ["OMP_WAIT_POLICY"].upper(), "set in the environment"
    elif jobs > 1:
        policy, reason = "PASSIVE", f"--jobs {jobs}: worker processes share the cores"
    elif machine_busy(cores):
        policy, reason = "PASSIVE", "other programs are keeping the cores busy"
    else:
        policy, reason = "ACTIVE", "idle machine"
    if "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = policy
        os.environ["OMP_NUM_THREADS"] = str(count)
    else:
        import torch

        torch.set_num_threads(count)
    _chosen = ThreadPlan(count, policy, f"{reason}; {cores} core(s) available", requested is not None)
    return _chosen


def chosen() -> ThreadPlan | None:
    """What :func:`configure` chose for this run (None when it was not called: a library caller's own setup)."""
    return _chosen
