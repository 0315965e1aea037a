"""TensorBoard event files for a run (``ganforge train --tensorboard``): every metrics.jsonl record as scalars
(``train/loss_d``, ``train/images_per_second``, ``eval/fd``, ...) and every sample grid as an image, under
``RUN/tensorboard/``. metrics.jsonl stays the record of truth; these are for looking.

    tensorboard --logdir runs/
"""

from __future__ import annotations

from numbers import Real
from pathlib import Path

from ganforge.errors import UserError

FOLDER = "tensorboard"


def summary_writer():
    """torch's SummaryWriter class, or one clear error where the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'ganforge[tensorboard]'") from error
    return SummaryWriter


class TensorBoardLog:
    def __init__(self, run_dir: Path, resumed_at: int | None = None):
        """``resumed_at``: the checkpoint step a resumed run continues from; events written after it by the run
        that crashed are dropped, as metrics.jsonl drops its records."""
        SummaryWriter = summary_writer()  # noqa: N806
        purge = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(str(Path(run_dir) / FOLDER), purge_step=purge)

    def record(self, record: dict) -> None:
        step = record.get("step", 0)
        for key, value in record.items():
            if key != "step" and isinstance(value, Real) and not isinstance(value, bool):
                self.writer.add_scalar(f"train/{key}", value, step)
        for key, value in (record.get("eval") or {}).items():
            if isinstance(value, Real) and not isinstance(value, bool):
                self.writer.add_scalar(f"eval/{key}", value, step)

    def image(self, step: int, png: Path) -> None:
        """A sample grid (or 2D scatter plot) as saved in samples/."""
        import numpy as np
        from PIL import Image

        with Image.open(png) as picture:
            self.writer.add_image("samples", np.asarray(picture.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
