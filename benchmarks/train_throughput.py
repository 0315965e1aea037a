"""Training throughput: ganforge's DCGAN-64 step (EMA and logging on) against the classic DCGAN loop.

The reference is the PyTorch DCGAN example's loop written out plainly (BCE, Adam 2e-4 / betas 0.5, 0.999,
BatchNorm, G forward once per step, no EMA, no checks). Both run in this process on the same data, in
alternating rounds; we quote the median images/s over 10-step windows and their ratio.

    python benchmarks/train_throughput.py [--steps 40] [--rounds 2] [--precision fp32]
Prints a table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ganforge.train.config import TrainConfig
from ganforge.train.data import load_data
from ganforge.train.loop import train
from ganforge.train.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.train.precision import resolve_device
from ganforge.train.run_folder import read_records

WINDOW = 10


def reference_windows(steps: int, batch_size: int, width: int, device: torch.device) -> list[float]:
    """The classic loop; returns images/s per WINDOW steps."""
    torch.manual_seed(0)
    data = load_data("digits", 64, seed=0).stream
    netG, netD = DCGANGenerator(100, 1, 64, width).to(device), DCGANDiscriminator(1, 64, width).to(device)
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    ones, zeros = torch.ones(batch_size, device=device), torch.zeros(batch_size, device=device)
    rates, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        real = data.next_batch(batch_size).to(device)
        netD.zero_grad()
        errD_real = criterion(netD(real), ones)
        errD_real.backward()
        fake = netG(torch.randn(batch_size, 100, device=device))
        errD_fake = criterion(netD(fake.detach()), zeros)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        errG = criterion(netD(fake), ones)
        errG.backward()
        optG.step()
        if step % WINDOW == 0:
            _ = (errD_real + errD_fake).item(), errG.item()  # the example prints its losses
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            rates.append(WINDOW * batch_size / (now - start))
            start = now
    return rates[1:]  # the first window includes warm-up


def ganforge_windows(steps: int, batch_size: int, width: int, precision: str, device: str,
                     folder: Path) -> list[float]:
    config = TrainConfig(data="digits", model="dcgan", resolution=64, width=width, steps=steps, batch_size=batch_size,
                         log_every=WINDOW, checkpoint_every=10**9, sample_every=10**9, eval_every=0, quiet=True,
                         precision=precision, device=device, out=str(folder))
    run = train(config)
    records = read_records((run / "metrics.jsonl").read_text())
    return [r["images_per_second"] for r in records if "images_per_second" in r][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="base channels of G and D (64)")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    reference, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            reference += reference_windows(args.steps, args.batch_size, args.width, device)
            ours += ganforge_windows(args.steps, args.batch_size, args.width, args.precision, str(device),
                                     Path(tmp) / f"run{round_index}")
    ref_median, our_median = statistics.median(reference), statistics.median(ours)
    result = {"benchmark": "train_throughput", "model": f"dcgan-64 (width {args.width}, z 100, 1 channel)",
              "batch_size": args.batch_size, "precision": args.precision, "device": str(device),
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "reference_images_per_second": ref_median,
              "ganforge_images_per_second": our_median, "ratio": our_median / ref_median,
              "windows": {"reference": reference, "ganforge": ours}}
    print(f"| loop | images/s (median of {len(ours)} windows) |\n|---|---|")
    print(f"| classic DCGAN reference | {ref_median:.1f} |\n| ganforge ({args.precision}, EMA, logging) | "
          f"{our_median:.1f} |\nratio ganforge / reference: {result['ratio']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
