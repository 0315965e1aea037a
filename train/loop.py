"""The training loop: cadence of logging, evaluation, sample grids and checkpoints around Trainer.train_step."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import load_data, spec_name
from .distributed import init_distributed, shutdown_distributed
from .images import image_grid, save_png, to_uint8
from .latents import latents_for_seeds
from .metrics import mode_coverage
from .plots import plot_losses, plot_points
from .precision import resolve_precision
from .run_folder import RunFolder, next_run_dir, read_config
from .trainer import Trainer

GRID_SEEDS = range(64)  # sample grids show seeds 0..63, the same images `ganforge sample --seeds 0-63` makes
EVAL_SEEDS = range(2500)  # the 2D protocol evaluates 2,500 samples


def train(config: TrainConfig, runs_root: Path = Path("runs")) -> Path:
    """Start a new run and return its folder (``config.out``, or the next ``runs/<NNNNN>-<data>-<model>``)."""
    config = config.resolved()
    run_dir = Path(config.out) if config.out else next_run_dir(runs_root, spec_name(config.data), config.model)
    return _run(config, run_dir, checkpoint=None)


def resume(run_dir: str | Path, steps: int | None = None, quiet: bool | None = None) -> Path:
    """Continue the run in ``run_dir`` from its latest checkpoint with its saved config.

    ``steps`` raises the total number of steps; an uninterrupted run and a resumed one end identical.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    changes = {k: v for k, v in {"steps": steps, "quiet": quiet}.items() if v is not None}
    return _run(dataclasses.replace(config, **changes), run_dir, checkpoint=load_checkpoint(run_dir))


def _run(config: TrainConfig, run_dir: Path, checkpoint: dict | None) -> Path:
    context = init_distributed()
    try:
        device = config.device
        if device == "auto" and context.enabled and torch.cuda.is_available():
            device = f"cuda:{context.local_rank}"  # one GPU per process under torchrun
        precision = resolve_precision(config.precision, device)
        data = load_data(config.data, config.resolution, config.seed)
        trainer = Trainer(config, data, precision, context)
        run = RunFolder(run_dir, writer=context.is_main)
        if checkpoint is None:
            run.create(config)
        else:
            trainer.load_state_dict(checkpoint, str(run_dir))
            run.write_config(config)
            run.rewind_metrics(trainer.step)
        Loop(trainer, run, quiet=config.quiet or not context.is_main).run()
        return run_dir
    finally:
        shutdown_distributed(context)


class Loop:
    def __init__(self, trainer: Trainer, folder: RunFolder, quiet: bool):
        self.trainer, self.folder, self.quiet = trainer, folder, quiet
        self.config = trainer.config
        z_dim, device = self.config.z_dim, trainer.precision.device
        seeds = EVAL_SEEDS if trainer.data.kind == "points" else GRID_SEEDS
        self.fixed_latents = torch.from_numpy(latents_for_seeds(seeds, z_dim)).to(device)

    def run(self) -> None:
        trainer, config = self.trainer, self.config
        start_step = trainer.step
        if start_step >= config.steps:
            print(f"{self.folder.path}: already at step {start_step} of {config.steps}; raise --steps to continue")
            return
        bar = tqdm(total=config.steps, initial=start_step, desc="train", unit="step", disable=self.quiet,
                   dynamic_ncols=True)
        window_start, window_steps, sums = time.perf_counter(), 0, {}
        start_time, last = time.perf_counter(), {}
        while trainer.step < config.steps:
            losses = trainer.train_step()
            window_steps += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            step = trainer.step
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                last = self._log_window(step, sums, window_steps, elapsed)
                bar.set_postfix(d=f"{last['loss_d']:.3f}", g=f"{last['loss_g']:.3f}",
                                img_s=f"{last['images_per_second']:.0f}")
                window_start, window_steps, sums = time.perf_counter(), 0, {}
            evaluate = trainer.data.kind == "points" and (step % config.eval_every == 0 or step == config.steps)
            sample = step % config.sample_every == 0 or step == config.steps
            if evaluate or sample:
                generated = self._generate()  # one pass of the EMA generator serves both
                if evaluate:
                    last.update(self._evaluate(step, generated))
                if sample:
                    self._save_samples(step, generated)
            if step % config.checkpoint_every == 0 or step == config.steps:
                self._save_checkpoint(step)
            bar.update(1)
        bar.close()
        self._summary(start_step, time.perf_counter() - start_time, last)

    def _log_window(self, step: int, sums: dict, steps: int, elapsed: float) -> dict:
        record = {"step": step, **{k: v / steps for k, v in sums.items()},
                  "images_per_second": steps * self.config.batch_size / max(elapsed, 1e-9),
                  "skipped_d": self.trainer.skipped["d"], "skipped_g": self.trainer.skipped["g"]}
        self.folder.log(record)
        return record

    @torch.no_grad()
    def _generate(self) -> torch.Tensor:
        return self.trainer.generator_ema(self.fixed_latents).float().cpu()

    def _evaluate(self, step: int, generated: torch.Tensor) -> dict:
        data = self.trainer.data
        result = mode_coverage(generated, data.modes, data.mode_sigma)
        self.folder.log({"step": step, "eval": result})
        return result

    def _save_samples(self, step: int, generated: torch.Tensor) -> None:
        if not self.folder.writer:
            return
        path = self.folder.samples / f"step-{step:06d}.png"
        if self.trainer.data.kind == "points":
            plot_points(generated.numpy(), self.trainer.data.modes.numpy(), path, f"step {step}")
        else:
            save_png(image_grid(to_uint8(generated)), path)

    def _save_checkpoint(self, step: int) -> None:
        if self.folder.writer:
            save_checkpoint(self.trainer.state_dict(), self.folder.checkpoints, step, self.config.keep_checkpoints)
            plot_losses(self.folder.records(), self.folder.path / "loss.png")

    def _summary(self, start_step: int, seconds: float, last: dict) -> None:
        if not self.folder.writer:
            return
        steps = self.trainer.step - start_step
        images = steps * self.config.batch_size
        parts = [f"trained {steps} steps ({start_step}->{self.trainer.step}) in {seconds:.1f}s",
                 f"{images / max(seconds, 1e-9):.0f} img/s",
                 f"skipped d/g {self.trainer.skipped['d']}/{self.trainer.skipped['g']}",
                 f"precision {self.trainer.precision.name} on {self.trainer.precision.device}"]
        if "modes_captured" in last:
            parts.append(f"modes {last['modes_captured']}/{last['num_modes']}, "
                         f"high-quality {100 * last['high_quality']:.1f}%, reverse KL {last['reverse_kl']:.3f}")
        print(f"{' | '.join(parts)}\nrun folder: {self.folder.path}")
