"""A run folder: config.json, metrics.jsonl, samples/, checkpoints/, loss.png. Only rank 0 writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ganforge.errors import UserError
from ganforge.files import atomic_write_bytes, remove_stale_temps

from .checkpoint import list_checkpoints
from .config import TrainConfig
from .records import finite_or_none

RUN_NAME = re.compile(r"^(\d{5})-")


def next_run_dir(root: Path, data_name: str, model: str) -> Path:
    """runs/<NNNNN>-<data>-<model>, numbered one past the highest existing run."""
    taken = [int(m.group(1)) for p in root.glob("*") if (m := RUN_NAME.match(p.name))] if root.is_dir() else []
    return root / f"{max(taken, default=-1) + 1:05d}-{data_name}-{model}"


def read_config(path: Path) -> TrainConfig:
    file = path / "config.json"
    if not file.is_file():
        raise UserError(f"{path}: not a run folder (no config.json)")
    try:
        values = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{file}: unreadable: {error}") from error
    return TrainConfig.from_dict(values)


class RunFolder:
    def __init__(self, path: Path, writer: bool = True, tensorboard: bool = False):
        self.path, self.writer, self.tensorboard = Path(path), writer, tensorboard
        self.checkpoints = self.path / "checkpoints"
        self.samples = self.path / "samples"
        self.metrics_file = self.path / "metrics.jsonl"
        self.board = None  # the TensorBoard log, opened by create or prepare_resume when asked for
        if writer and tensorboard:
            from .tensorboard import summary_writer

            summary_writer()  # missing: one clear error before anything is written

    def create(self, config: TrainConfig) -> None:
        if list_checkpoints(self.checkpoints) or (self.checkpoints / "latest.pt").exists():
            raise UserError(f"{self.path} already holds a run with checkpoints: continue it with "
                            f"--resume {self.path}, or choose another --out")
        if not self.writer:
            return
        self.samples.mkdir(parents=True, exist_ok=True)
        self.write_config(config)
        atomic_write_bytes(self.metrics_file, b"")
        self._open_board(None)

    def _open_board(self, resumed_at: int | None) -> None:
        if self.writer and self.tensorboard:
            from .tensorboard import TensorBoardLog

            self.board = TensorBoardLog(self.path, resumed_at)

    def write_config(self, config: TrainConfig) -> None:
        if self.writer:
            text = json.dumps(config.to_dict(), indent=2) + "\n"
            atomic_write_bytes(self.path / "config.json", text)

    def prepare_resume(self, step: int) -> None:
        """On resume: remove temp files a killed process left, and drop the metrics records written after the
        checkpoint we continue from (and a line torn by the crash)."""
        if not self.writer:
            return
        remove_stale_temps(self.path, recursive=True)
        if self.metrics_file.exists():
            kept = [record for record in self.records() if record.get("step", 0) <= step]
            atomic_write_bytes(self.metrics_file, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
        self._open_board(step)

    def log(self, record: dict) -> None:
        if self.writer:
            with open(self.metrics_file, "a") as handle:
                handle.write(json.dumps(finite_or_none(record), allow_nan=False) + "\n")
            if self.board:
                self.board.record(finite_or_none(record))

    def log_image(self, step: int, png: Path) -> None:
        if self.board:
            self.board.image(step, png)

    def close(self) -> None:
        if self.board:
            self.board.close()

    def records(self) -> list[dict]:
        if not self.metrics_file.exists():
            return []
        return read_records(self.metrics_file.read_text())


def read_records(text: str) -> list[dict]:
    """The JSON lines of metrics.jsonl; a line a crash cut short (the only kind a kill can leave) is skipped."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
