"""The training loop: cadence of logging, evaluation, sample grids and checkpoints around Trainer.train_step."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ganforge.distributed import init_distributed, shutdown_distributed
from ganforge.files import atomic_write
from ganforge.images import image_grid, save_png, to_uint8
from ganforge.latents import latents_for_seeds

from .checkpoint import load_checkpoint, save_checkpoint
from .clusters import DISCRIMINATOR, Clusters
from .config import TrainConfig
from .data import DataSource, load_data, spec_name
from .metrics.evaluator import Evaluator
from .plots import plot_losses, plot_points, plot_quality, progress_video
from .precision import resolve_precision
from .records import finite_or_none
from .run_folder import RunFolder, next_run_dir, read_config
from .trainer import Trainer, affordable_classes

GRID_SEEDS = range(64)  # sample grids show seeds 0..63, the same images `ganforge sample --seeds 0-63` makes
EVAL_SEEDS = {"points": range(2500), "images": range(2000)}  # the 2D protocol evaluates 2,500 samples


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
        if device in ("auto", "cuda") and context.enabled and torch.cuda.is_available():
            device = f"cuda:{context.local_rank}"  # one GPU per process under torchrun
        precision = resolve_precision(config.precision, device)
        # config.json states what ran: the resolved precision, device (its type under torchrun) and folder
        config = dataclasses.replace(config, precision=precision.name, out=str(run_dir),
                                     device=precision.device.type if context.enabled else str(precision.device))
        data = load_data(config.data, config.resolution, config.seed, config.fit, config.mirror,
                         quiet=config.quiet or not context.is_main)
        train_data = data.without_labels() if config.labels == "ignore" else data
        if checkpoint is None and config.self_conditional:
            config = affordable_classes(config, train_data)
        saved = checkpoint.get("clusters") if checkpoint else None  # resume: the pseudo-classes trained with
        clusters = Clusters.from_state(saved, str(run_dir)) if saved else None
        trainer = Trainer(config, train_data, precision, context, clusters=clusters)
        run = RunFolder(run_dir, writer=context.is_main, tensorboard=config.tensorboard)
        if checkpoint is None:
            run.create(config)
            if trainer.clusters is not None:
                run.log({"step": 0, "clusters": trainer.clusters.summary()})
                if context.is_main and not config.quiet:
                    print(cluster_line(trainer.clusters.summary()))
        else:
            trainer.load_state_dict(checkpoint, str(run_dir))
            run.write_config(config)
            run.prepare_resume(trainer.step)
        try:
            Loop(trainer, run, quiet=config.quiet or not context.is_main, eval_data=data).run()
        finally:
            run.close()
        return run_dir
    finally:
        shutdown_distributed(context)


def cluster_line(summary: dict) -> str:
    purity = "" if summary["purity"] is None else f", {100 * summary['purity']:.1f}% pure against the ignored labels"
    what = "images'" if summary.get("groups", 1) == 1 else f"{summary['groups']} channels' (one class per channel)"
    space = ("discriminator's features" if summary["features"] == DISCRIMINATOR else
             f"pooled pixels ({summary['features']})")
    merged = f" (merged from {summary['merged_from']})" if summary.get("merged_from") else ""
    return (f"pseudo-classes: {summary['k']} k-means clusters{merged} of the {what} {space}, shares "
            f"{100 * summary['smallest_share']:.1f}% to {100 * summary['largest_share']:.1f}%{purity}")


class Loop:
    """``eval_data``: what quality is measured against (the labelled source where training ignores the labels)."""

    def __init__(self, trainer: Trainer, folder: RunFolder, quiet: bool, eval_data: DataSource | None = None):
        self.trainer, self.folder, self.quiet = trainer, folder, quiet
        self.config = trainer.config
        z_dim, device = self.config.z_dim, trainer.precision.device
        self.points = trainer.data.kind == "points"
        self.grid_latents = torch.from_numpy(latents_for_seeds(GRID_SEEDS, z_dim)).to(device)
        self.eval_latents = torch.from_numpy(latents_for_seeds(EVAL_SEEDS[trainer.data.kind], z_dim)).to(device)
        # Only the writing process evaluates; its evaluator (a cached domain classifier for images) is made once.
        evaluates = folder.writer and self.config.eval_every > 0
        self.evaluator = Evaluator(eval_data or trainer.data, folder.path / "eval") if evaluates else None
        self.best = self._best_so_far()

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
            if trainer.recluster_due():
                self._recluster()
            losses = trainer.train_step()
            window_steps += 1
            for key, value in losses.items():  # summed on the device: read once per log window
                sums[key] = sums.get(key, 0.0) + value.double()
            step = trainer.step
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - window_start
                last = self._log_window(step, sums, window_steps, elapsed)
                bar.set_postfix(d=f"{last['loss_d']:.3f}", g=f"{last['loss_g']:.3f}",
                                img_s=f"{last['images_per_second']:.0f}",
                                **({"p": f"{last['augment_p']:.2f}"} if "augment_p" in last else {}))
                window_start, window_steps, sums = time.perf_counter(), 0, {}
            if self.evaluator and (step % config.eval_every == 0 or step == config.steps):
                last.update(self._evaluate(step))
            if step % config.sample_every == 0 or step == config.steps:
                self._save_samples(step, self._generate(self.eval_latents if self.points else self.grid_latents))
            if step % config.checkpoint_every == 0 or step == config.steps:
                self._save_checkpoint(step)
            bar.update(1)
        bar.close()
        if config.progress_video and self.folder.writer:
            progress_video(self.folder.samples, self.folder.path / f"progress.{config.progress_video}")
        self._summary(start_step, time.perf_counter() - start_time, last)

    def _recluster(self) -> None:
        """The pseudo-classes found again on D's features. The record's step is the first step trained with them,
        so a run resumed from the checkpoint before them drops it and logs it again."""
        record = {"step": self.trainer.step + 1, **self.trainer.recluster()}
        self.folder.log(record)
        if not self.quiet:
            clusters = record.get("clusters")
            tqdm.write(f"step {self.trainer.step}: " + (f"{cluster_line(clusters)}; {100 * record['kept_class']:.1f}% "
                                                        "of the images kept their class" if clusters else
                                                        record["reason"]))

    def _log_window(self, step: int, sums: dict, steps: int, elapsed: float) -> dict:
        record = {"step": step, **{k: float(v) / steps for k, v in sums.items()},
                  "images_per_second": steps * self.config.batch_size / max(elapsed, 1e-9),
                  **{f"skipped_{k}": v for k, v in self.trainer.skipped.items()}}
        if self.trainer.ada is not None:  # --ada-target: the share of samples augmented, as steered so far
            record["augment_p"] = float(self.trainer.ada.probability)
        self.folder.log(record)
        return record

    @torch.no_grad()
    def _generate(self, latents: torch.Tensor) -> torch.Tensor:
        """The EMA generator's samples, 500 at a time up to 32 x 32 and fewer for larger images (at 128 px, 31: the
        activations of 500 would take a few GB)."""
        shape = self.trainer.data.sample_shape
        chunk = 500 if self.points or shape[-1] * shape[-2] <= 1024 else max(1, 500 * 1024 // (shape[-1] * shape[-2]))
        return torch.cat([self.trainer.generator_ema(z).float().cpu() for z in latents.split(chunk)])

    def _evaluate(self, step: int) -> dict:
        """Evaluate the EMA generator; a new best primary metric also writes checkpoints/best.pt."""
        result = finite_or_none(self.evaluator.evaluate(self._generate(self.eval_latents)))
        self.folder.log({"step": step, "eval": result})
        primary = self.evaluator.primary
        if primary.better(result.get(primary.name), self.best):
            self.best = result[primary.name]
            self.folder.checkpoints.mkdir(parents=True, exist_ok=True)
            state = self.trainer.state_dict()
            atomic_write(self.folder.checkpoints / "best.pt", lambda handle: torch.save(state, handle))
        plot_quality(self.folder.records(), self.folder.path / "quality.png", primary.name)
        return result

    def _best_so_far(self) -> float | None:
        """On resume, the best primary value among the evaluations kept in metrics.jsonl."""
        if self.evaluator is None:
            return None
        best, primary = None, self.evaluator.primary
        for record in self.folder.records():
            if primary.better(record.get("eval", {}).get(primary.name), best):
                best = record["eval"][primary.name]
        return best

    def _save_samples(self, step: int, generated: torch.Tensor) -> None:
        if not self.folder.writer:
            return
        path = self.folder.samples / f"step-{step:06d}.png"
        if self.trainer.data.kind == "points":
            plot_points(generated.numpy(), self.trainer.data.modes.numpy(), path, f"step {step}")
        else:
            save_png(image_grid(to_uint8(generated)), path)
        self.folder.log_image(step, path)

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
                         f"high-quality {100 * last['high_quality']:.1f}%, reverse KL {_number(last['reverse_kl'])}")
        elif "fd" in last:
            parts.append(f"FD {_number(last['fd'], significant=True)} (n={last['n']})")
        print(f"{' | '.join(parts)}\nrun folder: {self.folder.path}")


def _number(value: float | None, digits: int = 3, significant: bool = False) -> str:
    """``digits`` decimals, or ``digits`` significant digits (a random embedding's FD can be 0.003)."""
    return "n/a" if value is None else f"{value:.{digits}{'g' if significant else 'f'}}"
