"""Where AOTInductor dies on a device, narrowed down: each variant runs in a child process of its own.

    python benchmarks/aoti_crash.py [--device cuda] [--variants all] [--out benchmarks/results/aoti_crash.json]

On the H100 (torch 2.11) `bench --backends aoti --device cuda` lost its whole process to a segfault with no
Python traceback. Here every variant (from ganforge's own path down to one layer) goes through the stages
export -> compile -> load -> run (batch 1, 2 and 64, compared with eager) in a fresh ``python -X faulthandler``,
which prints a marker after each stage it passes; a child that dies shows the stage it died in, its signal and
the Python stack faulthandler printed. The report names the smallest variant that still fails and writes its
stand-alone reproducer (what an upstream issue needs) beside the JSON. On a machine where nothing fails, every
row reads ok: also an answer.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "aoti_crash.json"
STAGES = ("export", "compile", "load", "run")
MARK = "STAGE-OK "

# Each variant is a stand-alone script (format fields: device, dynamic, workdir), smallest last: what fails in
# the smallest one is what an upstream report needs, and nothing in it depends on ganforge except the first.
PRELUDE = """
import torch
from torch import nn
torch.manual_seed(0)
device = torch.device({device!r})
torch.backends.cudnn.allow_tf32 = False  # ganforge's strict fp32 (train/precision.py)
torch.backends.cuda.matmul.allow_tf32 = False
"""
MODELS = {
    "ganforge-dcgan64": """
from ganforge.train.models import build_generator
model = build_generator({{"kind": "dcgan", "z_dim": 100, "channels": 3, "resolution": 64, "width": 64}})
example = torch.randn(2, 100)
""",
    "convtranspose-bn-tanh": """
model = nn.Sequential(nn.Unflatten(1, (100, 1, 1)), nn.ConvTranspose2d(100, 64, 4, 1, 0, bias=False),
                      nn.BatchNorm2d(64), nn.ReLU(), nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh())
example = torch.randn(2, 100)
""",
    "linear": """
model = nn.Sequential(nn.Linear(100, 64), nn.Tanh())
example = torch.randn(2, 100)
""",
}
STEPS = """
def ok(stage):
    print({mark!r} + stage, flush=True)

model = model.eval().to(device)
example = example.to(device)
with torch.no_grad():
    shapes = ({{0: torch.export.Dim("batch", min=1, max=64)}},) if {dynamic} else None
    program = torch.export.export(model, (example,), dynamic_shapes=shapes)
    ok("export")
    path = torch._inductor.aoti_compile_and_package(program, package_path={workdir!r} + "/model.pt2")
    ok("compile")
    package = torch._inductor.aoti_load_package(path)
    ok("load")
    for batch in ((1, 2, 64) if {dynamic} else (2,)):
        z = torch.randn(batch, *example.shape[1:], device=device)
        error = (package(z) - model(z)).abs().max().item()
        assert error < 1e-3, f"batch {{batch}}: max abs error {{error}} against eager"
    if device.type == "cuda":
        torch.cuda.synchronize()
    ok("run")
"""


def script(model: str, device: str, dynamic: bool, workdir: str) -> str:
    fields = {"device": device, "dynamic": dynamic, "workdir": workdir, "mark": MARK}
    return textwrap.dedent(PRELUDE + MODELS[model] + STEPS).format(**fields)


def run_child(code: str, timeout: float) -> dict:
    """One child process: the stages it passed, how it ended (signal name for a crash), the end of its stderr."""
    try:
        child = subprocess.run([sys.executable, "-X", "faulthandler", "-c", code], capture_output=True, text=True,
                               timeout=timeout)
    except subprocess.TimeoutExpired as timed_out:
        out = timed_out.stdout.decode() if isinstance(timed_out.stdout, bytes) else timed_out.stdout or ""
        return _row(out, "", f"timed out after {timeout:.0f} s")
    if child.returncode < 0:
        ending = f"killed by {signal.Signals(-child.returncode).name}"
    else:
        ending = "ok" if child.returncode == 0 else f"exit {child.returncode}"
    return _row(child.stdout, child.stderr, ending)


def _row(stdout: str, stderr: str, ending: str) -> dict:
    passed = [line[len(MARK):] for line in stdout.splitlines() if line.startswith(MARK)]
    failed = next((stage for stage in STAGES if stage not in passed), None)
    return {"passed": passed, "failed_in": failed, "ending": ending, "ok": failed is None and ending == "ok",
            "stderr_tail": stderr.strip().splitlines()[-25:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default="all", help=f"comma-separated of {', '.join(MODELS)}")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per child")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    models = list(MODELS) if args.variants == "all" else args.variants.split(",")
    if unknown := [m for m in models if m not in MODELS]:
        parser.error(f"unknown variant(s) {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    import torch

    from ganforge.benchmarks.bench.environment import environment

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA GPU here (this diagnoses AOTInductor on a GPU; --device cpu runs it on the CPU)")
        return 0
    rows, out = [], Path(args.out)
    for model in models:
        for dynamic in (True, False):
            with tempfile.TemporaryDirectory() as workdir:
                code = script(model, args.device, dynamic, workdir)
                row = {"variant": model, "dynamic_batch": dynamic, **run_child(code, args.timeout)}
            rows.append(row)
            print(f"{model:<22} {'dynamic' if dynamic else 'static ':<7} {row['ending']:<22} "
                  f"{'passed every stage' if row['ok'] else 'failed in ' + str(row['failed_in'])}", flush=True)
            if not row["ok"]:
                print("    " + "\n    ".join(row["stderr_tail"][-8:]))
                row["reproducer"] = code
    failing = [r for r in rows if not r["ok"]]
    report = {"environment": environment(None), "device": args.device, "rows": rows,
              "smallest_failing": failing[-1]["variant"] if failing else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if failing:  # the last failing row is the smallest model that fails (MODELS runs from largest to smallest)
        repro = out.with_name(out.stem + "_repro.py")
        repro.write_text(failing[-1]["reproducer"])
        print(f"smallest failing variant: {failing[-1]['variant']}; stand-alone reproducer: {repro}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
