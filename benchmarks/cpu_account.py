"""Where the CPU time of a load test goes: a server's event loops, its other threads, the load generator, the rest.

    before = snapshot(server.pid)
    wrk = run_wrk(...)                       # the load generator, a child of this process
    account = cpu_account(before, snapshot(server.pid), requests=wrk["requests"])

Linux only (/proc). The server's processes are the one given and its descendants (`serve --workers` children); in
each, the main thread runs the event loop and the others are its worker threads (inference: the batcher's worker
and the runtime's pool; JSON encoding); the workers' time is the process's less its main thread's, so threads
that end between snapshots count too. The load generator is counted from this process's reaped children
(getrusage), so snapshot after any earlier child has been waited for. A rate divided by ``busy_fraction`` is
its ceiling: what the same per-request costs would give with every core busy. When that stays under a target, no
scheduling change can reach it.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    processes: dict[int, tuple[float, float]]  # pid -> CPU seconds (user + system) of the process, of its main thread
    children: float  # CPU seconds of this process's reaped children
    busy: float  # machine-wide busy core-seconds since boot
    idle: float  # machine-wide idle core-seconds since boot (idle + iowait)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in _tasks(current):
            try:
                todo += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
            except OSError:
                pass
    return found


def _seconds(stat_file: str) -> float | None:
    try:
        stat = Path(stat_file).read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 of proc(5) is fields[0]
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def _tasks(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def snapshot(pid: int) -> Snapshot:
    processes = {}
    for process in _descendants(pid):
        total, main = _seconds(f"/proc/{process}/stat"), _seconds(f"/proc/{process}/task/{process}/stat")
        if total is not None and main is not None:
            processes[process] = (total, main)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = (ticks[3] + ticks[4]) / TICK
    return Snapshot(processes, usage.ru_utime + usage.ru_stime, sum(ticks[:8]) / TICK - idle, idle)


def cpu_account(before: Snapshot, after: Snapshot, requests: int, cores: int | None = None) -> dict:
    """CPU microseconds per request: ``event_loop`` (the server processes' main threads), ``worker_threads`` (their
    other threads), ``load_generator``, ``other`` (the rest of the machine's busy time: kernel, other processes);
    and ``busy_fraction``: the machine's busy share of all cores."""
    cores = cores or os.cpu_count() or 1
    loop = threads = 0.0
    for pid, (total, main) in after.processes.items():
        total_before, main_before = before.processes.get(pid, (0.0, 0.0))
        loop += main - main_before
        threads += (total - total_before) - (main - main_before)
    generator = after.children - before.children
    busy, idle = after.busy - before.busy, after.idle - before.idle
    per = 1e6 / max(requests, 1)
    elapsed = (busy + idle) / cores
    return {"event_loop_us": loop * per, "worker_threads_us": threads * per, "load_generator_us": generator * per,
            "other_us": max(busy - loop - threads - generator, 0.0) * per, "busy_us": busy * per,
            "busy_fraction": busy / max(busy + idle, 1e-9), "seconds": elapsed, "cores": cores}
