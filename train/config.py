"""Training configuration: one frozen dataclass, validated on construction, saved as the run's config.json.

Example::

    config = TrainConfig(data="ring", model="mlp", steps=2000, pack=4)
    run_dir = train(config)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ganforge.errors import UserError
from ganforge.images import VIDEO_FORMATS

from .augment import POLICIES as AUGMENT_POLICIES
from .clusters import CLUSTER_FEATURES
from .data import POINT_SOURCES, check_spec
from .data.cache import FITS
from .models import IMAGE_MODELS
from .precision import PRECISIONS

LOSSES = ("ns", "hinge", "wgan-gp", "rpgan")
LABEL_USES = ("use", "ignore")  # ignore: train as if the data had no labels (evaluation still measures with them)
LR_SCHEDULES = ("constant", "linear")  # linear: both learning rates fall linearly to 0 at --steps
MODELS = ("mlp", *IMAGE_MODELS)
RESOLUTIONS = {"dcgan": (16, 32, 64), "residual": (16, 32, 64, 128, 256, 512, 1024)}
# per-model defaults for the fields left as None (the DCGAN has no depth to set)
MODEL_DEFAULTS = {"mlp": {"z_dim": 16, "width": 256, "depth": 3}, "dcgan": {"z_dim": 100, "width": 64},
                  "residual": {"z_dim": 64, "width": 32, "depth": 1}}


@dataclass(frozen=True)
class TrainConfig:
    data: str = "digits"
    model: str = "dcgan"
    resolution: int = 32
    z_dim: int | None = None  # None: the model's default (MODEL_DEFAULTS)
    width: int | None = None  # dcgan: channels of the last hidden layer (ngf/ndf); residual: channels at full size;
    # mlp: hidden units
    depth: int | None = None  # mlp: hidden layers; residual: blocks per stage; unused by dcgan
    width_d: int | None = None  # D's width where it differs from G's (the DCGAN's ndf beside its ngf); None: --width
    full_size_blocks: int | None = None  # residual: blocks of the full-size stage of G and D (None: --depth)
    batch_norm_g: bool = False  # residual: BatchNorm in G's blocks (the DCGAN's G always has it)
    batch_norm_d: bool = False  # residual: BatchNorm in D's blocks (the DCGAN's D has it without penalties)
    loss: str = "ns"
    r1: float = 0.0  # R1 gradient penalty weight (gamma) on real data
    r2: float = 0.0  # R2: the same penalty on generated data (R3GAN pairs it with R1 and the rpgan loss)
    gp_weight: float = 10.0  # WGAN-GP lambda
    pack: int = 1  # PacGAN: the discriminator judges `pack` samples at once
    spectral_norm: bool = False
    augment: str = ""  # DiffAugment policies for D's inputs, comma-separated: color, translation, cutout
    ada_target: float = 0.0  # adaptive augmentation: DiffAugment's probability steered to keep E[sign D(real)] here
    conditional: bool = False  # labelled images: G draws its class from z0, D is a projection discriminator
    self_conditional: int = 0  # images without labels: K pseudo-classes by clustering, then as --conditional; 0 = off
    cluster_channels: bool = False  # --self-conditional on each channel alone (channels that are separate images)
    cluster_features: str = "pixels16"  # the embedding k-means clusters: pixels16, centred16 or framed16
    merge_clusters: bool = False  # with --self-conditional: merge the clusters that split one tight group (K: the most)
    recluster_every: int = 0  # with --self-conditional: cluster again on D's features every N steps; 0 = never
    labels: str = "use"  # "ignore": hide the data's labels from training (the unlabelled setting on labelled data)
    mirror: bool = False  # x-flipped copies of the images as more data
    fit: str = "crop"  # how a folder's non-square images become square: crop (the centre) or pad (black borders)
    init_from: str = ""  # fine-tuning: G, D and the EMA start from this run folder or checkpoint (same architecture)
    freeze_d: int = 0  # FreezeD: D's first N blocks (from the image side) keep their weights
    precision: str = "auto"
    device: str = "auto"
    ema: float = 0.999  # EMA decay of the generator's weights; 0 turns EMA off
    steps: int = 1000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_schedule: str = "constant"
    seed: int = 0
    out: str | None = None  # None: runs/<NNNNN>-<data>-<model>
    checkpoint_every: int = 500
    sample_every: int = 500
    eval_every: int = 500  # quality metrics of the EMA generator every N steps (and at the end); 0 = off
    keep_checkpoints: int = 3
    log_every: int = 10
    quiet: bool = False
    tensorboard: bool = False  # also write TensorBoard event files under RUN/tensorboard/
    progress_video: str | None = None  # gif or mp4: write RUN/progress.<format> of the sample grids at the end

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # a hand-edited config.json can hold anything
            _check_type(field.name, getattr(self, field.name), field.type)
        check_spec(self.data)
        _choice("model", self.model, MODELS)
        _choice("loss", self.loss, LOSSES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("lr-schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("labels", self.labels, LABEL_USES)
        _choice("fit", self.fit, FITS)
        if self.progress_video is not None:
            _choice("progress-video", self.progress_video, VIDEO_FORMATS)
        if self.mirror and self.is_points:
            raise UserError(f"--mirror flips images; --data {self.data} is 2D points")
        for policy in self.augment_policy:
            _choice("augment", policy, AUGMENT_POLICIES)
        if self.ada_target and not (0 < self.ada_target < 1 and self.augment_policy):
            raise UserError(f"--ada-target takes a number in (0, 1) (0.6 in ADA) and needs --augment policies to "
                            f"steer, got {self.ada_target} with --augment {self.augment!r}")
        if self.augment_policy and self.is_points:
            raise UserError(f"--augment transforms images; --data {self.data} is 2D points")
        if self.model in IMAGE_MODELS and self.resolution not in RESOLUTIONS[self.model]:
            raise UserError(f"unsupported --resolution {self.resolution} for {self.model} (choose from "
                            f"{', '.join(map(str, RESOLUTIONS[self.model]))})")
        if self.model in IMAGE_MODELS and self.is_points:
            raise UserError(f"--data {self.data} is 2D points: use --model mlp")
        if self.model == "residual" and self.spectral_norm:
            raise UserError("--spectral-norm is for the dcgan and mlp discriminators; the residual one is kept stable "
                            "by its initialisation and R1/R2 (--r1, --r2)")
        for name in ("steps", "batch_size", "pack", "checkpoint_every", "sample_every",
                     "keep_checkpoints", "log_every", "resolution"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.full_size_blocks is not None and (self.model != "residual" or self.full_size_blocks < 0):
            raise UserError(f"--full-size-blocks is for --model residual and takes 0 or more, got "
                            f"{self.full_size_blocks} with --model {self.model}")
        for name in ("batch_norm_g", "batch_norm_d"):
            if getattr(self, name) and self.model != "residual":
                raise UserError(f"--{name.replace('_', '-')} is for --model residual (the dcgan has BatchNorm where "
                                f"it can), got --model {self.model}")
        if self.batch_norm_d and (self.loss == "wgan-gp" or self.r1 or self.r2):
            raise UserError("--batch-norm-d mixes the samples of a batch, which breaks the per-sample gradient "
                            "penalties (--r1, --r2, wgan-gp): use one or the other")
        if self.freeze_d < 0:
            raise UserError(f"--freeze-d must be 0 (off) or more, got {self.freeze_d}")
        if self.eval_every < 0:
            raise UserError(f"--eval-every must be 0 (off) or more, got {self.eval_every}")
        for name in ("z_dim", "width", "depth", "width_d"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size % self.pack:
            raise UserError(f"--batch-size {self.batch_size} must be a multiple of --pack {self.pack}")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be in [0, 1), got {self.ema}")
        if self.lr_g <= 0 or self.lr_d <= 0:
            raise UserError("--lr-g and --lr-d must be positive")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise UserError(f"--betas takes two numbers in [0, 1), got {self.betas}")
        if self.r1 < 0 or self.r2 < 0 or self.gp_weight < 0:
            raise UserError("--r1, --r2 and the gradient-penalty weight must be non-negative")
        if self.conditional and (self.model not in IMAGE_MODELS or self.pack != 1):
            raise UserError("--conditional needs an image model (dcgan, residual) and --pack 1 (add --no-conditional "
                            "to train without classes)")
        self._check_self_conditional()

    def _check_self_conditional(self) -> None:
        if self.conditional and self.labels == "ignore":
            raise UserError("--conditional trains on the labels that --labels ignore hides: use --self-conditional K "
                            "(pseudo-classes by clustering) instead")
        if self.recluster_every < 0:
            raise UserError(f"--recluster-every takes a number of steps (0 = never), got {self.recluster_every}")
        if not self.self_conditional:
            if self.cluster_channels or self.recluster_every or self.merge_clusters:
                flag = ("--cluster-channels" if self.cluster_channels else "--recluster-every" if self.recluster_every
                        else "--merge-clusters")
                raise UserError(f"{flag} clusters images into pseudo-classes: it needs --self-conditional K")
            return
        if self.recluster_every and self.cluster_channels:
            raise UserError("--recluster-every clusters whole images on the discriminator's features; "
                            "--cluster-channels clusters each channel alone: choose one")
        _choice("cluster-features", self.cluster_features, CLUSTER_FEATURES)
        if self.self_conditional < 2:
            raise UserError(f"--self-conditional takes 2 or more pseudo-classes (0 = off), got {self.self_conditional}")
        if self.conditional:
            raise UserError("--self-conditional and --conditional exclude each other: pseudo-classes are for data "
                            "without labels (add --no-conditional)")
        if self.is_points:
            raise UserError(f"--self-conditional clusters images; --data {self.data} is 2D points")
        if self.model not in IMAGE_MODELS or self.pack != 1:
            raise UserError("--self-conditional needs an image model (dcgan, residual) and --pack 1")

    @property
    def augment_policy(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.augment.split(",") if p.strip())

    @property
    def is_points(self) -> bool:
        return self.data in POINT_SOURCES

    def resolved(self) -> TrainConfig:
        """Fill per-model defaults so that config.json states every value the run used."""
        defaults = MODEL_DEFAULTS[self.model]
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"config has unknown fields: {', '.join(sorted(unknown))}")
        if "betas" in values:
            values = {**values, "betas": tuple(values["betas"])}
        if isinstance(values.get("progress_video"), bool):  # a run made before the format could be chosen
            values = {**values, "progress_video": "gif" if values["progress_video"] else None}
        return cls(**values)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _is_number,
    "bool": lambda v: isinstance(v, bool),
    "tuple[float, float]": lambda v: isinstance(v, (tuple, list)) and all(_is_number(x) for x in v),
}


def _check_type(name: str, value, annotation: str) -> None:
    """``annotation`` is the field's type as written (``from __future__ import annotations``)."""
    kind = annotation.removesuffix(" | None")
    if value is None and kind != annotation:
        return
    if not _TYPE_CHECKS[kind](value):
        what = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string",
                "tuple[float, float]": "two numbers"}[kind]
        raise UserError(f"--{name.replace('_', '-')} must be {what}, got {value!r}")


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown --{flag} {value!r} (choose from {', '.join(choices)})")
