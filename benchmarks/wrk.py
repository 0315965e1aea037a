"""Drive an HTTP endpoint with wrk (a C load generator: `apt-get install wrk`), one KServe v2 request per call.

    script = seed_script(tmp / "seed.lua", binary=True)
    result = run_wrk("http://127.0.0.1:8000/v2/models/generator/infer", 32, 10, script)

Every request carries its own seed (a counter), so the server cannot answer from a cache; wrk's Lua `done` hook
prints the counts and latency percentiles on one line, which is parsed here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

SCRIPT = """
local counter = 0
local template = '%s'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%s
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, counter))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d %%.0f %%.0f %%.0f\\n", summary.requests,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""
FIELDS = ("requests", "non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts", "p50_us", "p90_us",
          "p99_us")


def wrk_missing() -> str | None:
    return None if shutil.which("wrk") else "wrk is not installed (apt-get install wrk)"


def request_script(path: Path, body: dict, pace_ms: float | None = None) -> Path:
    """A wrk script POSTing ``body`` as JSON, each request with its own counter in place of the number 123456789 (a
    body without it is sent as it is). ``pace_ms``: each connection waits that long before each request (wrk's delay
    hook), so C connections offer about C * 1000 / pace_ms requests/s while the server keeps up: a sustained load
    below saturation."""
    template = json.dumps(body, separators=(",", ":")).replace("%", "%%").replace("123456789", "%d")
    pacing = f"delay = function() return {pace_ms:.3f} end" if pace_ms else ""
    path.write_text(SCRIPT % (template, pacing))
    return path


def seed_script(path: Path, binary: bool = True, output: str = "images", pace_ms: float | None = None,
                shape: tuple[int, ...] = (1,)) -> Path:
    """A KServe v2 single-seed request for ``output``, as JSON or with binary output; ``shape`` [1, 1] for a model
    whose first dimension is the batch (Triton's)."""
    body = {"inputs": [{"name": "seed", "datatype": "INT64", "shape": list(shape), "data": [123456789]}],
            "outputs": [{"name": output, "parameters": {"binary_data": binary}}]}
    return request_script(path, body, pace_ms)


def run_wrk(url: str, connections: int, seconds: float, script: Path, threads: int = 1) -> dict:
    output = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",
                             "--timeout", "10s", "-s", str(script), url], capture_output=True, text=True,
                            check=True).stdout
    found = re.search(r"RESULT (.*)", output)
    if not found:
        raise RuntimeError(f"wrk printed no result: {output[-300:]}")
    fields = [int(float(v)) for v in found.group(1).split()]
    return dict(zip(FIELDS, fields)) | {"connections": connections, "seconds": seconds,
                                        "requests_per_second": fields[0] / seconds}
