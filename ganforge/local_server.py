"""Servers started as child processes on this machine (tests, benchmarks, `ganforge triton-server`): free ports,
and waiting until one answers its readiness URL."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held open together while chosen, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Until ``url`` answers 200; RuntimeError saying "exited with CODE" if ``process`` ends first, or "not ready
    after N s"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:  # URLError, refused or reset connections, timeouts
            pass
        time.sleep(0.25)
    raise RuntimeError(f"not ready after {timeout:.0f} s")
