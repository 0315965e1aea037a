"""Chaos benchmark: random SIGKILLs during training and during sampling, each resumed, the end state compared
with an uninterrupted run; and a server soak with wrk, answers counted by status, RSS and open files compared.

    python benchmarks/chaos.py                                   # 20 kills each, soak 300 s, overload 60 s
    python benchmarks/chaos.py --parts train,sample --kills 5    # the kill loops only
    python benchmarks/chaos.py --parts server --soak 60 --overload 20

- train: a small DCGAN run (checkpoint every 10 steps) killed at random moments (inside checkpoint writes too),
  resumed each time until it finishes; its last checkpoint must equal an uninterrupted run's bit for bit, and no
  temp file may be left.
- sample: `ganforge sample --resume` killed at random moments until complete; manifest and shards must be
  byte-identical to an uninterrupted run's.
- server: `ganforge serve --max-queue 256` under a sustained load of about 80% of its capacity measured with wrk
  (--soak seconds: wrk, 16 connections each waiting between requests 16 / rate seconds less the response time,
  which up to three 5 s probes measure and correct), then wrk with 10x the connections that saturate it (--overload
  seconds; wrk is closed-loop, so this is 10x the concurrency, not 10x the rate), then 2,000 connections, far
  past --max-queue, for half as long. Counts of 200/503/other from the server's own /metrics, p99 latency, RSS
  and open file descriptors before and after (after the keep-alive timeout).

Writes benchmarks/results/chaos.json (after every part).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.wrk import run_wrk, seed_script, wrk_missing
from ganforge.files import TEMP_NAME, atomic_write_bytes

GANFORGE = str(Path(sys.executable).parent / "ganforge")
TRAIN = ["--data", "digits", "--model", "dcgan", "--resolution", "16", "--width", "8", "--z-dim", "8",
         "--batch-size", "16", "--checkpoint-every", "10", "--sample-every", "100", "--eval-every", "0",
         "--precision", "fp32", "--device", "cpu", "--quiet"]


def kill_loop(start, resume, kills: int, window: tuple[float, float], rng: random.Random) -> dict:
    """Run start(), then resume() after each kill at a random moment in ``window`` seconds, until a run ends."""
    landed, started = 0, time.perf_counter()
    command = start()
    while True:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if landed < kills:
            try:
                child.wait(timeout=rng.uniform(*window))
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                child.stderr.close()
                landed += 1
                command = resume()
                continue
        else:
            child.wait()
        error = child.stderr.read()
        child.stderr.close()
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {error.strip().splitlines()[-1:]}")
        return {"kills": landed, "seconds": round(time.perf_counter() - started, 1)}


def leftover_temps(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if TEMP_NAME.match(p.name)]


def same_state(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return a == b


def train_part(root: Path, kills: int, steps: int, rng: random.Random) -> dict:
    from ganforge.train.checkpoint import load_checkpoint

    reference, chaos = root / "reference", root / "chaos"
    subprocess.run([GANFORGE, "train", *TRAIN, "--steps", str(steps), "--out", str(reference)], check=True)
    fresh = [GANFORGE, "train", *TRAIN, "--steps", str(steps), "--out", str(chaos)]

    def resume():  # before the first checkpoint exists there is nothing to resume: start again
        has_checkpoint = (chaos / "checkpoints" / "latest.pt").exists() or any(chaos.glob("checkpoints/step-*.pt"))
        return [GANFORGE, "train", "--resume", str(chaos), "--quiet"] if has_checkpoint else fresh

    result = kill_loop(lambda: fresh, resume, kills, (2.5, 6.0), rng)
    a, b = load_checkpoint(reference), load_checkpoint(chaos)
    a["train_config"].pop("out"), b["train_config"].pop("out")
    return result | {"steps": steps, "identical": same_state(a, b), "leftover_temp_files": leftover_temps(chaos)}


def sample_part(root: Path, kills: int, count: int, rng: random.Random) -> dict:
    """Sampling is fast, so this part uses a DCGAN-32 of width 32 (one training step: what it draws does not matter
    here, only that a killed run ends byte-identical)."""
    model = root / "g.onnx"
    subprocess.run([GANFORGE, "train", *TRAIN, "--resolution", "32", "--width", "32", "--z-dim", "64", "--steps", "1",
                    "--out", str(root / "sampler")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([GANFORGE, "export", str(root / "sampler"), "--out", str(model)], check=True,
                   stdout=subprocess.DEVNULL)
    args = ["sample", str(model), "--seeds", f"0-{count - 1}", "--shard-size", "2000", "--quiet"]
    subprocess.run([GANFORGE, *args, "--out", str(root / "s-reference")], check=True, stdout=subprocess.DEVNULL)
    command = [GANFORGE, *args, "--out", str(root / "s-chaos"), "--resume"]
    result = kill_loop(lambda: command, lambda: command, kills, (2.0, 5.0), rng)

    def files(folder: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}

    return result | {"images": count, "identical": files(root / "s-reference") == files(root / "s-chaos"),
                     "leftover_temp_files": leftover_temps(root / "s-chaos")}


# ---- server soak -------------------------------------------------------------------------------------------------
MAX_QUEUE = 256
SOAK_CONNECTIONS = 16  # each paced to rate / 16 requests/s


def process_usage(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
    return {"rss_mib": round(rss_kib / 1024, 1), "open_fds": len(os.listdir(f"/proc/{pid}/fd"))}


def status_counts(base: str) -> dict[str, float]:
    import httpx

    text = httpx.get(f"{base}/metrics", timeout=10).text
    pattern = r'ganforge_requests_total\{status="(\d+)"\} (\S+)'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text)}


def paced_script(path: Path, url: str, rate: float, probes: int = 3) -> Path:
    """A wrk script whose SOAK_CONNECTIONS offer about ``rate`` requests/s: each connection waits between its
    requests the period minus the response time. 5 s probes measure the response time at the current wait and
    correct it, up to ``probes`` times (one correction undershot: responses slow down as the rate goes up)."""
    period_ms = 1000 * SOAK_CONNECTIONS / rate
    pace_ms = period_ms
    for _ in range(probes):
        probe = run_wrk(url, SOAK_CONNECTIONS, 5, seed_script(path, binary=True, pace_ms=pace_ms))
        if abs(probe["requests_per_second"] / rate - 1) < 0.03:
            break
        response_ms = max(0.0, 1000 * SOAK_CONNECTIONS / probe["requests_per_second"] - pace_ms)
        pace_ms = max(0.1, period_ms - response_ms)
    return seed_script(path, binary=True, pace_ms=pace_ms)


def server_part(root: Path, soak: float, overload: float) -> dict:
    from ganforge.benchmarks.bench.http_server import serving_process

    if wrk_missing():
        return {"skipped": wrk_missing()}
    script = seed_script(root / "seed.lua", binary=True)
    # a queue of 256 latents (~0.15 s of work here): 320 connections overfill it, so the overload sheds with 503s
    with serving_process(str(root / "g.onnx"), "onnxruntime", max_queue=MAX_QUEUE) as (base, server):
        url = f"{base}/v2/models/generator/infer"
        run_wrk(url, 32, 3, script)  # warm-up
        before = process_usage(server.pid)
        capacity = run_wrk(url, 32, 10, script)
        rate = 0.8 * capacity["requests_per_second"]
        counts0 = status_counts(base)
        paced = paced_script(root / "paced.lua", url, rate)
        sustained = run_wrk(url, SOAK_CONNECTIONS, soak, paced)
        counts1 = status_counts(base)
        flood = run_wrk(url, 320, overload, script)
        counts2 = status_counts(base)
        beyond = run_wrk(url, 2000, overload / 2, script)  # far past --max-queue
        counts3 = status_counts(base)
        time.sleep(7)  # idle keep-alive connections close after 5 s
        after = process_usage(server.pid)
        # the same flood again: memory that grows again is a leak; memory that stays is the allocators' high-water
        run_wrk(url, 2000, overload / 2, script)
        time.sleep(7)
        after_again = process_usage(server.pid)
    delta = lambda a, b: {k: int(b.get(k, 0) - a.get(k, 0)) for k in sorted(set(a) | set(b))}  # noqa: E731
    return {"capacity": capacity, "soak": {"offered_rate": rate, "seconds": soak, "result": sustained,
                                           "status_counts": delta(counts0, counts1)},
            "overload": {"wrk": flood, "status_counts": delta(counts1, counts2)}, "max_queue": MAX_QUEUE,
            "flood_2000_connections": {"wrk": beyond, "status_counts": delta(counts2, counts3)},
            "before": before, "after": after, "after_second_flood": after_again}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="train,sample,server")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--steps", type=int, default=6000, help="training steps of the killed run")
    parser.add_argument("--images", type=int, default=200_000, help="images of the killed sampling run")
    parser.add_argument("--soak", type=float, default=300.0)
    parser.add_argument("--overload", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/chaos.json")
    args = parser.parse_args(argv)
    parts, rng = args.parts.split(","), random.Random(args.seed)
    results = {"environment": environment(None), "args": vars(args)}
    out = Path(args.out)
    root = Path(tempfile.mkdtemp(prefix="ganforge-chaos-"))

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, json.dumps(results, indent=2) + "\n")

    if out.is_file():  # parts not run now keep their earlier results
        results = json.loads(out.read_text()) | {"environment": results["environment"], "args": results["args"]}
    try:
        if "train" in parts:
            results["train"] = train_part(root, args.kills, args.steps, rng)
            save()
        if "sample" in parts or "server" in parts:
            sampled = sample_part(root, args.kills if "sample" in parts else 0, args.images, rng)
            if "sample" in parts:
                results["sample"] = sampled
                save()
        if "server" in parts:
            results["server"] = server_part(root, args.soak, args.overload)
            save()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for part in ("train", "sample"):
        if part in results:
            r = results[part]
            print(f"{part}: {r['kills']} kills, identical to the uninterrupted run: {r['identical']}, "
                  f"temp files left: {len(r['leftover_temp_files'])}, {r['seconds']} s")
    if "server" in results and "skipped" not in results["server"]:
        s = results["server"]
        print(f"server: capacity {s['capacity']['requests_per_second']:.0f} req/s; soak at 80% "
              f"{s['soak']['status_counts']}; overload x10 connections {s['overload']['status_counts']}, "
              f"p99 {s['overload']['wrk']['p99_us'] / 1e3:.0f} ms; 2000 connections "
              f"{s['flood_2000_connections']['status_counts']} + {s['flood_2000_connections']['wrk']['connect_errors']}"
              f" refused; RSS {s['before']['rss_mib']} -> "
              f"{s['after']['rss_mib']} MiB ({s['after_second_flood']['rss_mib']} after the same flood again), fds "
              f"{s['before']['open_fds']} -> {s['after']['open_fds']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
