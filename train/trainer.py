"""One GAN training step, and the state a checkpoint needs to continue it exactly.

Per step (the classic DCGAN schedule): draw z, make ``fake = G(z)`` once; update D on real vs
``fake.detach()``; update G through the updated D on the same ``fake``; update the EMA of G.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from torch import nn

import ganforge
from ganforge.distributed import DistContext, all_reduce_mean_, broadcast_, rank_slice
from ganforge.errors import UserError

from .augment import AdaptiveStrength, DiffAugment
from .checkpoint import FORMAT, VERSION, find_checkpoint, load_checkpoint, load_module_state
from .clusters import DISCRIMINATOR, MIN_PER_CLUSTER, Clusters, fit_clusters, most_clusters, nearest, refit_clusters
from .config import TrainConfig
from .data import DataSource
from .data.base import to_unit_range
from .losses import LOSSES, gradient_penalty, r1_penalty
from .models import build_discriminator, build_generator, generator_config, output_shape, pack_samples
from .models.classes import LatentClasses, class_prior
from .precision import Precision


class Trainer:
    """``clusters``: the pseudo-classes of a self-conditional run, when resuming (else fitted here, before step 1)."""

    def __init__(self, config: TrainConfig, data: DataSource, precision: Precision,
                 context: DistContext = DistContext(), fused: bool | None = None, clusters: Clusters | None = None):
        self.config, self.data, self.precision, self.context = config, data, precision, context
        if config.batch_size % (context.world_size * config.pack):
            raise UserError(f"--batch-size {config.batch_size} must be a multiple of processes x pack "
                            f"({context.world_size} x {config.pack})")
        device = precision.device
        self.clusters = clusters or (pseudo_classes(config, data, context) if config.self_conditional else None)
        torch.manual_seed(config.seed)  # same seed on every rank: identical initial weights
        prior = labelled_prior(config, data) if config.conditional else self.clusters.prior if self.clusters else None
        self.generator_config = generator_config(config.model, config.z_dim, data.sample_shape, config.width,
                                                 config.depth, images=data.kind == "images", class_prior=prior,
                                                 class_groups=data.label_groups if config.conditional else
                                                 self.clusters.groups if self.clusters else 1,
                                                 pseudo_classes=self.clusters is not None,
                                                 full_size_blocks=config.full_size_blocks,
                                                 batch_norm=config.batch_norm_g)
        self.generator = build_generator(self.generator_config).to(device)
        self.discriminator = make_discriminator(config, self.generator_config).to(device)
        # channels_last where a model runs faster in it (the residual one); real batches follow D's format
        self.memory_format = getattr(self.discriminator, "memory_format", torch.contiguous_format)
        for module in (self.generator, self.discriminator):
            module.to(memory_format=getattr(module, "memory_format", torch.contiguous_format))
        if self.clusters is not None:  # resumed: after a re-clustering they embed with this D
            self._embed_with_d(self.clusters)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        if config.init_from:
            self._init_from(config.init_from)
        self.trainable_d = trainable_parameters(self.discriminator, config.freeze_d)
        # On a GPU, fused Adam: it takes the skip decision as a device tensor (found_inf), so no step waits for the
        # device. On a CPU the device is the host (reading a tensor costs nothing) and the default Adam stays:
        # the recipes' quality was measured with it, and fused rounds differently.
        self.fused = device.type == "cuda" if fused is None else fused
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g, betas=config.betas,
                                            fused=self.fused or None)
        self.optimizer_d = torch.optim.Adam(self.trainable_d, lr=config.lr_d, betas=config.betas,
                                            fused=self.fused or None)
        self.scaler_g, self.scaler_d = precision.grad_scaler(), precision.grad_scaler()
        self.latent_rng = torch.Generator(device).manual_seed(config.seed + 1)
        self.augment_rng = torch.Generator(device).manual_seed(config.seed + 2)
        policy = config.augment_policy
        self.ada = AdaptiveStrength(config.ada_target, config.batch_size, device) if config.ada_target else None
        self.augment = (DiffAugment(policy, self.augment_rng, self.ada.probability if self.ada else None) if policy
                        else (lambda images: images))
        self.loss = LOSSES[config.loss]
        self.step = 0
        self.skipped_steps = torch.zeros(2, dtype=torch.int64, device=device)  # d, g: counted on the device

    # ---- one step -------------------------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        config, device = self.config, self.precision.device
        part = rank_slice(config.batch_size, self.context)
        real, real_labels = self._real_batch(part)
        z = torch.randn(config.batch_size, config.z_dim, generator=self.latent_rng, device=device)[part]
        fake_labels = self.generator.classes.labels(z) if self.generator_config.get("class_prior") else None
        augment = self.augment
        self._set_learning_rates()

        with self.precision.autocast():
            fake = self.generator(z)
            real_logits = self._judge(augment(real), real_labels)
            fake_logits = self._judge(augment(fake.detach()), fake_labels)
            loss_d = self.loss.discriminator(real_logits.float(), fake_logits.float())
        if self.ada is not None:
            self.ada.observe(real_logits)
        penalty = self._penalty(real, fake, real_labels, fake_labels, part)
        self._apply(loss_d + penalty, self.optimizer_d, self.scaler_d, self.discriminator, 0)

        self.discriminator.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
        with self.precision.autocast():
            real_logits = self._judge(augment(real), real_labels).float() if self.loss.relativistic else None
            loss_g = self.loss.generator(self._judge(augment(fake), fake_labels).float(), real_logits)
        self._apply(loss_g, self.optimizer_g, self.scaler_g, self.generator, 1)
        for parameter in self.trainable_d:  # frozen blocks (--freeze-d) stay frozen
            parameter.requires_grad_(True)

        self._update_ema()
        self.step += 1
        if self.ada is not None:
            if self.context.enabled:  # every rank steers by the whole batch
                all_reduce_mean_([self.ada.signs])
            self.ada.update(self.step)
        if self.context.enabled:  # BatchNorm statistics differ per rank's data: keep the average
            all_reduce_mean_(self._float_buffers())
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "penalty": penalty.detach()}

    def _init_from(self, source: str) -> None:
        """Fine-tuning: G, D and the EMA from another run of the same architecture."""
        state = load_checkpoint(find_checkpoint(source))
        theirs, ours = architecture(state["generator_config"]), architecture(self.generator_config)
        if theirs != ours:
            raise UserError(f"--init-from {source}: its generator {theirs} is not this run's {ours} (fine-tuning needs "
                            "the same model, size and class count)")
        load_module_state(self.generator, state["generator"], "generator", source)
        load_module_state(self.generator_ema, state["generator_ema"], "EMA generator", source)
        load_module_state(self.discriminator, state["discriminator"], "discriminator", source)

    # ---- self-conditioning: the pseudo-classes found again on D's features (--recluster-every) -------------
    def recluster_due(self) -> bool:
        """Whether the pseudo-classes are found again before the next step (every N steps, never before step 1)."""
        every = self.config.recluster_every
        return bool(every and self.clusters is not None and self.step and self.step % every == 0)

    def recluster(self) -> dict:
        """k-means again on D's features of the images the first clustering saw, numbered after the old clusters;
        G draws its classes with the new shares from now on. Returns what the run's log records."""
        images, true_labels = self.data.stream.pool(CLUSTER_POOL, seed=self.config.seed)
        chunks = [to_unit_range(chunk) for chunk in images.split(1024)]
        embedded = torch.cat([discriminator_features(self.discriminator)(chunk) for chunk in chunks])
        previous = (nearest(embedded, self.clusters.centroids) if self.clusters.features == DISCRIMINATOR else
                    torch.cat([self.clusters.assign(chunk) for chunk in chunks]))  # D's features: embedded above
        refit = refit_clusters(embedded, previous, self.clusters.k, self.config.seed + self.step, true_labels)
        if refit is None:  # documented fallback: the run goes on with the clusters it has
            return {"reclustered": False, "reason": "a pseudo-class would be empty: the clusters stay as they were"}
        clusters, kept = refit
        if self.context.enabled:  # k-means is deterministic, but one process decides: every rank conditions alike
            prior = torch.tensor(clusters.prior, dtype=torch.float64)
            broadcast_([clusters.centroids, prior])
            clusters.prior = prior.tolist()
        self.clusters = self._embed_with_d(clusters)
        self.generator_config = {**self.generator_config, "class_prior": clusters.prior}
        edges = LatentClasses(clusters.prior).edges
        for generator in (self.generator, self.generator_ema):
            generator.classes.edges.copy_(edges)
        return {"reclustered": True, "kept_class": kept, "clusters": clusters.summary()}

    def _embed_with_d(self, clusters: Clusters) -> Clusters:
        """``clusters``, embedding real images with this run's D where they were found on D's features."""
        if clusters.features == DISCRIMINATOR:
            clusters.embed = discriminator_features(self.discriminator)
        return clusters

    def _real_batch(self, part: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        images, labels = self._stream_batch(part)
        return (images.contiguous(memory_format=self.memory_format) if images.ndim == 4 else images), labels

    def _stream_batch(self, part: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        device, stream, size = self.precision.device, self.data.stream, self.config.batch_size
        if self.clusters is not None:  # a real image's pseudo-class is its nearest centroid
            images = stream.next_batch(size)[part]
            return images.to(device, non_blocking=True), self.clusters.assign(images).to(device, non_blocking=True)
        if not self.config.conditional:
            return stream.next_batch(size)[part].to(device, non_blocking=True), None
        images, labels = stream.next_labelled_batch(size)
        return images[part].to(device, non_blocking=True), labels[part].to(device, non_blocking=True)

    def _judge(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """D's logits for ``images`` (packed for PacGAN; with their labels where D is conditional)."""
        packed = pack_samples(images, self.config.pack)
        return self.discriminator(packed) if labels is None else self.discriminator(packed, labels)

    def _set_learning_rates(self) -> None:
        """The schedule is a function of the step alone, so a resumed run continues it exactly."""
        scale = 1.0
        if self.config.lr_schedule == "linear":
            scale = max(0.0, 1.0 - self.step / self.config.steps)
        for optimizer, lr in ((self.optimizer_g, self.config.lr_g), (self.optimizer_d, self.config.lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr * scale

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                 fake_labels: torch.Tensor | None, part: slice) -> torch.Tensor:
        """Gradient penalties in fp32 outside autocast: input gradients overflow easily in fp16. A conditional D
        is judged with the real images' labels (for WGAN-GP's interpolates too), and R2 with the fakes' own."""
        config = self.config
        penalty = torch.zeros((), device=self.precision.device)
        critic = lambda x: self._judge(x, labels)  # noqa: E731
        if config.loss == "wgan-gp":
            alpha = torch.rand(config.batch_size, generator=self.latent_rng, device=real.device)[part]
            penalty = penalty + config.gp_weight * gradient_penalty(critic, real, fake, alpha)
        if config.r1 > 0:
            penalty = penalty + config.r1 / 2 * r1_penalty(critic, real)
        if config.r2 > 0:
            penalty = penalty + config.r2 / 2 * r1_penalty(lambda x: self._judge(x, fake_labels), fake)
        return penalty

    def _apply(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               module: nn.Module, index: int) -> None:
        """Backward, average across ranks, and step, unless the loss or a gradient is not finite. The decision
        stays on the device with fused Adam, which skips the update (and its step count) where ``found_inf`` is 1,
        as it does for a GradScaler: a step then waits for the device nowhere (``skipped`` reads the counts)."""
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        check = loss.detach().float().reshape(1)
        if self.context.enabled:
            all_reduce_mean_([*grads, check])  # a non-finite value on any rank makes the mean non-finite
        scaler.unscale_(optimizer)  # fp16: also records the scaler's own overflow check for update()
        bad = ~(torch.isfinite(check).all() & torch.isfinite(torch.nn.utils.get_total_norm(grads)))
        if self.fused:
            optimizer.grad_scale, optimizer.found_inf = None, bad.float()
            optimizer.step()
        elif not bad.item():
            optimizer.step()
        self.skipped_steps[index] += bad
        scaler.update()  # with fp16, a skipped step also lowers the loss scale

    @property
    def skipped(self) -> dict[str, int]:
        """Steps skipped for a non-finite loss or gradient, per network (reading them waits for the device)."""
        d, g = self.skipped_steps.tolist()
        return {"d": d, "g": g}

    @torch.no_grad()
    def _update_ema(self) -> None:
        # Ramp the decay up early on (as TensorFlow's ExponentialMovingAverage with num_updates does) so the
        # average is not dominated by the random initial weights in short runs.
        decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
        ema_params = list(self.generator_ema.parameters())
        torch._foreach_lerp_(ema_params, list(self.generator.parameters()), 1.0 - decay)
        for ema_buffer, buffer in zip(self.generator_ema.buffers(), self.generator.buffers()):
            ema_buffer.copy_(buffer)

    def _float_buffers(self) -> list[torch.Tensor]:
        modules = (self.generator, self.discriminator)
        return [b for m in modules for b in m.buffers() if b.is_floating_point()]

    # ---- checkpoint state -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": FORMAT, "version": VERSION, "step": self.step,
            "generator_config": self.generator_config, "train_config": self.config.to_dict(),
            "data_name": self.data.name, "ganforge_version": ganforge.__version__,
            "torch_version": torch.__version__.split("+")[0],
            "generator": self.generator.state_dict(), "generator_ema": self.generator_ema.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(), "optimizer_d": self.optimizer_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "latents": self.latent_rng.get_state(),
                    "augment": self.augment_rng.get_state()},
            "data": self.data.stream.state_dict(), "skipped_steps": dict(self.skipped),
            **({"clusters": self.clusters.state_dict()} if self.clusters is not None else {}),
            **({"ada": self.ada.state_dict()} if self.ada is not None else {}),
        }

    def load_state_dict(self, state: dict, path: str = "checkpoint") -> None:
        if state["generator_config"] != self.generator_config:
            raise UserError(f"{path}: generator config {state['generator_config']} does not match this run's "
                            f"{self.generator_config}")
        if self.clusters is not None:  # the centroids the run was trained with, whatever a refit would give
            self.clusters = self._embed_with_d(Clusters.from_state(state["clusters"], path))
        load_module_state(self.generator, state["generator"], "generator", path)
        load_module_state(self.generator_ema, state["generator_ema"], "EMA generator", path)
        load_module_state(self.discriminator, state["discriminator"], "discriminator", path)
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        if state["scaler_g"]:
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])
        torch.set_rng_state(state["rng"]["torch"])
        self.latent_rng.set_state(state["rng"]["latents"])
        if "augment" in state["rng"]:  # checkpoints from before --augment
            self.augment_rng.set_state(state["rng"]["augment"])
        self.data.stream.load_state_dict(state["data"])
        if self.ada is not None:
            self.ada.load_state_dict(state["ada"])
        self.step = int(state["step"])
        self.skipped_steps.copy_(torch.tensor([state["skipped_steps"]["d"], state["skipped_steps"]["g"]]))


def architecture(generator_config: dict) -> dict:
    """What fixes a generator's weights: its config but the class shares (a buffer rebuilt from the config), so a
    run can fine-tune on data with the same number of classes in other proportions."""
    config = {k: v for k, v in generator_config.items() if k not in ("class_prior", "class_source")}
    return {**config, "classes": len(generator_config.get("class_prior") or [])}


def make_discriminator(config: TrainConfig, generator_config: dict) -> nn.Module:
    """The run's D: its model and sizes, and a projection head for the classes its generator draws."""
    uses_penalty = config.loss == "wgan-gp" or config.r1 > 0
    # BatchNorm mixes samples, which breaks per-sample gradient penalties; SN-GAN uses no BatchNorm either. The
    # residual D has it only when asked (--batch-norm-d, which refuses the penalties).
    batch_norm = config.batch_norm_d if config.model == "residual" else not (uses_penalty or config.spectral_norm)
    prior = generator_config.get("class_prior")
    width = config.width_d or config.width
    return build_discriminator(config.model, output_shape(generator_config), width, config.depth, config.pack,
                               batch_norm, config.spectral_norm, num_classes=len(prior) if prior else 0,
                               class_groups=generator_config.get("class_groups", 1),
                               full_size_blocks=generator_config.get("full_size_blocks"))


def checkpoint_discriminator(state: dict, path: str = "checkpoint") -> nn.Module:
    """The discriminator a checkpoint holds, on the CPU in eval mode (what its re-clustered pseudo-classes embed)."""
    config = TrainConfig.from_dict(state["train_config"])
    discriminator = make_discriminator(config, state["generator_config"])
    load_module_state(discriminator, state["discriminator"], "discriminator", path)
    return discriminator.eval()


def discriminator_features(discriminator: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """float [B, C, H, W] in [-1, 1] -> float32 [B, F] on the CPU: what D's last layer reads, in fp32 and eval mode
    (BatchNorm's running statistics, none of them changed), the embedding of re-clustered pseudo-classes."""
    device = next(discriminator.parameters()).device
    memory_format = getattr(discriminator, "memory_format", torch.contiguous_format)

    @torch.no_grad()
    def embed(images: torch.Tensor) -> torch.Tensor:
        training = discriminator.training
        discriminator.eval()
        try:
            x = images.to(device, torch.float32).contiguous(memory_format=memory_format)
            return discriminator.features(x).float().cpu()
        finally:
            discriminator.train(training)

    return embed


def trainable_parameters(discriminator: nn.Module, frozen_blocks: int) -> list[nn.Parameter]:
    """D's parameters but those of its first ``frozen_blocks`` blocks from the image side (FreezeD, Mo et al. 2020),
    which are set not to need gradients."""
    blocks = discriminator.blocks()
    if frozen_blocks >= len(blocks):
        raise UserError(f"--freeze-d {frozen_blocks}: this discriminator has {len(blocks)} blocks; freeze fewer")
    frozen = {id(p) for block in blocks[:frozen_blocks] for p in block.parameters()}
    for parameter in discriminator.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
    return [p for p in discriminator.parameters() if id(p) not in frozen]


CLUSTER_POOL = 20_000  # images drawn to cluster data that is generated without end (stacked digits)


def affordable_classes(config: TrainConfig, data: DataSource) -> TrainConfig:
    """The run's config with at most as many pseudo-classes as the data can fill: the documented fallback for a set
    too small for the recipe's K (fewer; none below 10 images), printed and recorded in config.json."""
    images = data.num_samples or CLUSTER_POOL
    most = most_clusters(images)
    if most >= config.self_conditional:
        return config
    fitted = most if most >= 2 else 0
    print(f"--self-conditional {config.self_conditional}: {images} images fill at most {most} pseudo-classes "
          f"({MIN_PER_CLUSTER} images each); " + (f"using {most}" if fitted else "training without classes"))
    return dataclasses.replace(config, self_conditional=fitted)


def pseudo_classes(config: TrainConfig, data: DataSource, context: DistContext) -> Clusters:
    """Cluster the training images into ``config.self_conditional`` pseudo-classes (the same ones on every rank)."""
    if data.labels is not None:
        raise UserError(f"--data {config.data} has labels: train on them with --conditional, or add --labels ignore "
                        "to find pseudo-classes without them")
    groups = data.sample_shape[0] if config.cluster_channels else 1
    if groups < 2 and config.cluster_channels:
        raise UserError(f"--cluster-channels clusters each channel on its own; --data {config.data} has one channel")
    images, true_labels = data.stream.pool(CLUSTER_POOL, seed=config.seed)
    clusters = fit_clusters(images, config.self_conditional, config.seed, true_labels, groups,
                            config.cluster_features, config.merge_clusters)
    if context.enabled:  # k-means is deterministic, but one process decides: every rank conditions alike
        prior = torch.tensor(clusters.prior, dtype=torch.float64)
        broadcast_([clusters.centroids, prior])
        clusters.prior = prior.tolist()
    return clusters


def labelled_prior(config: TrainConfig, data: DataSource) -> list[float]:
    """The class shares a conditional G draws its classes with: those of the training data's labels."""
    labels = data.labels
    if labels is None:
        raise UserError(f"--conditional needs labelled images (digits, shapes, folders with class subfolders, npz "
                        f"with labels); --data {config.data} has none")
    try:
        return class_prior(labels)
    except ValueError as error:
        raise UserError(f"--conditional: the labels of --data {config.data} are not classes 0..K-1: {error}") from None
