import pytest
import torch

from ganforge.train.data import load_data
from ganforge.train.precision import Precision, auto_dtype, resolve_precision
from ganforge.train.trainer import Trainer


def _trainer(config, fused=None):
    return Trainer(config, load_data(config.data, config.resolution, config.seed),
                   resolve_precision(config.precision, config.device), fused=fused)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("loss", ["ns", "hinge", "wgan-gp"])
def test_one_step_is_finite_and_changes_weights(tiny, precision, loss):
    trainer = _trainer(tiny(precision=precision, loss=loss, r1=1.0 if loss == "hinge" else 0.0))
    before_g = [p.detach().clone() for p in trainer.generator.parameters()]
    before_d = [p.detach().clone() for p in trainer.discriminator.parameters()]
    before_ema = [p.detach().clone() for p in trainer.generator_ema.parameters()]
    losses = trainer.train_step()
    # fp16's GradScaler starts at 2**16 and may skip its first steps while it finds a scale that does not
    # overflow (each skip halves the scale); the next steps must then apply.
    while precision == "fp16" and sum(trainer.skipped.values()) and trainer.step < 6:
        assert trainer.scaler_d.get_scale() < 2.0**16 or trainer.scaler_g.get_scale() < 2.0**16
        losses = trainer.train_step()
    assert all(torch.isfinite(v) for v in losses.values())
    if precision != "fp16":
        assert trainer.skipped == {"d": 0, "g": 0}
    assert any(not torch.equal(a, b) for a, b in zip(before_g, trainer.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, trainer.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_ema, trainer.generator_ema.parameters()))


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_residual_model_trains_with_rpgan_r1_and_r2(tiny, precision):
    trainer = _trainer(tiny(model="residual", loss="rpgan", r1=0.1, r2=0.1, conditional=True, precision=precision))
    before_g = [p.detach().clone() for p in trainer.generator.parameters()]
    for _ in range(3):
        losses = trainer.train_step()
    assert all(torch.isfinite(v) for v in losses.values()) and losses["penalty"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before_g, trainer.generator.parameters()))
    if precision != "fp16":
        assert trainer.skipped == {"d": 0, "g": 0}


def test_residual_model_trains_with_batch_norm_in_g_and_d_and_its_ema_keeps_g_statistics(tiny):
    trainer = _trainer(tiny(model="residual", batch_norm_g=True, batch_norm_d=True, full_size_blocks=0))
    for _ in range(3):
        losses = trainer.train_step()
    assert all(torch.isfinite(v) for v in losses.values())
    norms = [m for m in trainer.generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.num_batches_tracked > 0 for m in norms)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trainer.discriminator.modules())
    for ema, live in zip(trainer.generator_ema.buffers(), trainer.generator.buffers()):
        assert torch.equal(ema, live)  # the EMA generator samples with the running statistics of G


@pytest.mark.parametrize("model", ["dcgan", "residual"])
def test_a_discriminator_wider_than_its_generator_trains_resumes_and_fine_tunes_only_at_its_width(tiny, tmp_path,
                                                                                                   model):
    from ganforge.errors import UserError
    from ganforge.train.loop import train
    from ganforge.train.trainer import checkpoint_discriminator

    def first(discriminator):  # channels of the layer that reads the image: the width
        return next(m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d))

    narrow, wide = _trainer(tiny(model=model)), _trainer(tiny(model=model, width_d=16))
    shapes = lambda module: {k: v.shape for k, v in module.state_dict().items()}
    assert shapes(wide.generator) == shapes(narrow.generator)  # G keeps --width 8
    assert (first(narrow.discriminator).out_channels, first(wide.discriminator).out_channels) == (8, 16)
    losses = wide.train_step()
    assert all(torch.isfinite(v) for v in losses.values())
    run = train(tiny(model=model, width_d=16, out=str(tmp_path / "wide")))
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["train_config"]["width_d"] == 16
    assert first(checkpoint_discriminator(state)).out_channels == 16  # what --recluster-every and eval rebuild
    assert _trainer(tiny(model=model, width_d=16, init_from=str(run))).step == 0
    with pytest.raises(UserError, match="does not fit"):  # G fits, D does not
        _trainer(tiny(model=model, init_from=str(run)))
    with pytest.raises(UserError, match="--width-d must be at least 1"):
        tiny(model=model, width_d=0)


def test_rpgan_is_relativistic_and_r2_penalises_generated_samples():
    from ganforge.train.losses import RPGAN, r1_penalty

    real, fake = torch.randn(8), torch.randn(8)
    # only the difference of a real and a fake logit counts: a constant shift of D changes nothing
    assert torch.allclose(RPGAN.discriminator(real + 3, fake + 3), RPGAN.discriminator(real, fake))
    assert torch.allclose(RPGAN.generator(fake + 3, real + 3), RPGAN.generator(fake, real))
    assert RPGAN.discriminator(real + 5, fake) < RPGAN.discriminator(real, fake) < RPGAN.discriminator(real, fake + 5)
    quadratic = lambda x: x.square().flatten(1).sum(1)  # noqa: E731  grad = 2x: penalty = mean ||2x||^2
    samples = torch.randn(4, 1, 2, 2)
    assert torch.allclose(r1_penalty(quadratic, samples), (2 * samples).square().flatten(1).sum(1).mean())


@pytest.mark.parametrize("fused", [False, True])
def test_non_finite_step_is_skipped_and_counted(tiny, fused):
    trainer = _trainer(tiny(), fused)
    trainer.train_step()  # a good step first: Adam has state and a step count of 1
    with torch.no_grad():
        next(trainer.discriminator.parameters()).fill_(float("nan"))
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    adam_steps = [s["step"].clone() for s in trainer.optimizer_g.state.values()]
    trainer.train_step()
    assert trainer.skipped == {"d": 1, "g": 1}
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.generator.parameters()))
    assert [s["step"] for s in trainer.optimizer_g.state.values()] == adam_steps == [1.0] * len(adam_steps)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("options", [{}, {"conditional": True, "data": "digits", "augment": "translation,cutout"},
                                     {"conditional": True, "data": "stacked-digits"}, {"loss": "wgan-gp"},
                                     {"loss": "hinge", "r1": 1.0},
                                     {"model": "residual", "loss": "rpgan", "r1": 0.1, "r2": 0.1}])
def test_a_step_never_waits_for_the_device(tiny, monkeypatch, precision, options):
    """With fused Adam (a GPU's default, forced here) no tensor becomes a Python number inside train_step (on a GPU
    each would be a host sync): the skip decision and the skipped counts stay on the device, also when skipping."""
    trainer = _trainer(tiny(precision=precision, **options), fused=True)
    trainer.train_step()  # the first step may set up lazily
    with torch.no_grad():
        next(trainer.discriminator.parameters()).mul_(float("inf") if options == {} else 1.0)

    def synced(*args, **kwargs):
        raise AssertionError("a tensor was read on the host inside train_step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, synced)
    losses = trainer.train_step()
    monkeypatch.undo()
    assert set(losses) == {"loss_d", "loss_g", "penalty"} and trainer.step == 2


def test_pack_and_spectral_norm_train(tiny):
    trainer = _trainer(tiny(pack=4, spectral_norm=True))
    assert all(torch.isfinite(v) for v in trainer.train_step().values())


def test_auto_precision_is_fp32_on_cpus_without_native_bf16(monkeypatch):
    import ganforge.train.precision as precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert auto_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert auto_dtype(torch.device("cpu")) == torch.bfloat16


def test_emulated_cpu_precisions_get_a_warning(monkeypatch, capsys):
    import ganforge.machine as machine

    monkeypatch.setattr(machine, "_cpu_flags", lambda: "flags: avx2")
    for name in ("fp16", "bf16"):
        resolve_precision(name, "cpu")
        assert f"no native {name} arithmetic" in capsys.readouterr().err
    resolve_precision("fp32", "cpu")
    resolve_precision("auto", "cpu")  # auto picks fp32 here: nothing to warn about
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(machine, "_cpu_flags", lambda: "flags: avx512_bf16 avx512_fp16")
    resolve_precision("fp16", "cpu")
    assert capsys.readouterr().err == ""


def test_only_fp16_uses_a_grad_scaler():
    cpu = torch.device("cpu")
    assert Precision(cpu, torch.float16).grad_scaler().is_enabled()
    assert not Precision(cpu, torch.bfloat16).grad_scaler().is_enabled()
    assert not Precision(cpu, torch.float32).grad_scaler().is_enabled()


def test_diffaugment_is_differentiable_and_keeps_shapes():
    from ganforge.train.augment import DiffAugment

    images = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    augmented = DiffAugment(("color", "translation", "cutout"), torch.Generator().manual_seed(0))(images)
    assert augmented.shape == images.shape and not torch.equal(augmented, images)
    augmented.sum().backward()  # G learns through D's augmented view
    assert images.grad is not None and images.grad.abs().sum() > 0
    cut = DiffAugment(("cutout",), torch.Generator().manual_seed(1))(torch.ones(8, 1, 16, 16))
    assert ((cut == 0).flatten(1).sum(1) <= 64).all() and (cut == 0).any()  # at most an 8 x 8 square


def test_augment_flag_is_checked(tiny):
    from ganforge.errors import UserError

    with pytest.raises(UserError, match="unknown --augment 'flip'"):
        tiny(augment="translation,flip")
    with pytest.raises(UserError, match="2D points"):
        tiny(data="ring", model="mlp", augment="translation")


def test_conditional_step_trains_on_labelled_batches(tiny):
    trainer = _trainer(tiny(conditional=True))
    assert trainer.generator_config["class_prior"] == pytest.approx(
        (torch.bincount(trainer.data.labels) / len(trainer.data.labels)).tolist())
    before = trainer.data.stream.state_dict()
    assert all(torch.isfinite(v) for v in trainer.train_step().values())
    assert trainer.data.stream.state_dict() != before  # labelled batches advance the stream as plain ones do


def test_conditional_stacked_digits_draw_a_digit_per_channel(tiny):
    trainer = _trainer(tiny(data="stacked-digits", conditional=True))
    assert trainer.generator_config["class_groups"] == 3
    images, labels = trainer.data.stream.next_labelled_batch(6)
    assert images.shape == (6, 3, 16, 16) and labels.shape == (6, 3)
    z = torch.randn(6, trainer.config.z_dim)
    assert trainer.generator.classes.labels(z).shape == (6, 3)
    assert all(torch.isfinite(v) for v in trainer.train_step().values())


def test_stacked_digits_labels_are_the_digits_of_each_channel():
    from ganforge.train.data import load_data

    stream = load_data("stacked-digits", resolution=16, seed=3).stream
    plain = load_data("stacked-digits", resolution=16, seed=3).stream.next_batch(8)
    images, labels = stream.next_labelled_batch(8)
    assert torch.equal(images, plain)  # labelled or not, the same batches
    digits, digit_labels = load_data("digits", resolution=16, seed=3).stream.images, stream.labels
    for n in range(8):
        for channel in range(3):  # each channel is some digit of the labelled class
            matches = (digits[:, 0].float().div(127.5).sub(1) == images[n, channel]).flatten(1).all(1)
            assert labels[n, channel] in digit_labels[matches]


@pytest.mark.parametrize("changes, message", [
    (dict(data="ring"), "an image model"),
    (dict(pack=2), "--pack 1"),
])
def test_conditional_needs_labelled_images_and_dcgan(tiny, changes, message):
    from ganforge.errors import UserError

    with pytest.raises(UserError, match=message):
        config = tiny(conditional=True, **{"model": "mlp"} if changes.get("data") == "ring" else {}, **changes)
        _trainer(config)


def test_the_digits_recipe_is_conditional_until_a_flag_contradicts_it():
    from ganforge.errors import UserError
    from ganforge.train.recipes import recipe_config

    assert recipe_config("digits").conditional and not recipe_config("ring").conditional
    assert not recipe_config("shapes", labels="ignore").conditional
    assert not recipe_config("digits", model="mlp").conditional  # the recipe's model settings go with its model
    # another image model keeps how the recipe uses the classes, and takes its own size and optimizer
    residual = recipe_config("digits", model="residual")
    assert residual.conditional and residual.z_dim is None and residual.augment == recipe_config("digits").augment
    assert (residual.width, residual.lr_g, residual.lr_d, residual.betas) == (8, 2e-3, 2e-3, (0.0, 0.99))
    stacked = recipe_config("stacked-digits", model="residual")
    assert (stacked.width, stacked.lr_g, stacked.betas) == (16, 1e-3, (0.0, 0.99))
    flagged = recipe_config("digits", model="residual", width=32, lr_g=1e-4)
    assert (flagged.width, flagged.lr_g) == (32, 1e-4)  # flags win
    assert recipe_config("digits").lr_g == 2e-4  # the recipe's own model keeps the recipe's optimizer
    unlabelled = recipe_config("digits", labels="ignore", model="residual")
    assert unlabelled.self_conditional == recipe_config("digits", labels="ignore").self_conditional > 0
    assert not unlabelled.conditional
    with pytest.raises(UserError, match="--no-conditional"):
        recipe_config("digits", pack=2)
    assert recipe_config("digits", pack=2, conditional=False).pack == 2


def test_init_from_starts_g_d_and_ema_from_another_run_with_fresh_optimizers(tiny, tmp_path):
    from ganforge.errors import UserError
    from ganforge.train.loop import train
    from ganforge.train.recipes import recipe_config

    source = train(tiny(model="residual", steps=3, out=str(tmp_path / "source")))
    state = torch.load(source / "checkpoints" / "latest.pt", weights_only=True)
    config = recipe_config("shapes", init_from=str(source), resolution=16, steps=1, device="cpu", precision="fp32",
                           quiet=True)
    # the architecture comes from the source run (the shapes recipe is a conditional 32 px DCGAN; shapes have 3
    # channels)
    assert (config.model, config.resolution, config.width, config.z_dim) == ("residual", 16, 8, 8)
    assert (config.lr_g, config.betas) == (2e-3, (0.0, 0.99))  # fresh optimizers with the residual model's values
    with pytest.raises(UserError, match="not this run's"):  # 3 channels here, 1 in the digits run
        _trainer(config)
    trainer = _trainer(tiny(model="residual", init_from=str(source)))
    for name, module in (("generator", trainer.generator), ("discriminator", trainer.discriminator),
                         ("generator_ema", trainer.generator_ema)):
        assert all(torch.equal(v, state[name][k]) for k, v in module.state_dict().items())
    assert trainer.step == 0 and not trainer.optimizer_g.state and not trainer.optimizer_d.state


def test_init_from_a_merged_self_conditional_run_clusters_a_small_folder_into_its_class_count(tiny, tmp_path):
    """The classic transfer case without labels: a run on all the shapes, whose 40 clusters --merge-clusters turned
    into the 18 kinds, fine-tuned on a folder of 100 circles. The folder is clustered into the source's 18 (not 40,
    which 100 images cannot fill, nor merged again), so G's weights fit."""
    from PIL import Image

    from ganforge.train.data import load_data
    from ganforge.train.data.shapes import COLOURS, SHAPES
    from ganforge.train.loop import train
    from ganforge.train.recipes import recipe_config

    source = train(tiny(data="shapes", resolution=32, labels="ignore", self_conditional=40, cluster_features="framed16",
                        merge_clusters=True, steps=1, checkpoint_every=1, out=str(tmp_path / "source")))
    kept = len(torch.load(source / "checkpoints" / "latest.pt", weights_only=True)["generator_config"]["class_prior"])
    assert kept == 18
    shapes = load_data("shapes", 32, seed=1)
    circles = (shapes.labels // len(COLOURS) == SHAPES.index("circle")).nonzero().flatten()[:100]
    folder = tmp_path / "circles"
    folder.mkdir()
    for index in circles.tolist():
        Image.fromarray(shapes.stream.images[index].permute(1, 2, 0).numpy()).save(folder / f"{index}.png")
    config = recipe_config(f"folder:{folder}", init_from=str(source), steps=1, batch_size=16, device="cpu",
                           precision="fp32", quiet=True, out=str(tmp_path / "tuned"))
    assert (config.self_conditional, config.merge_clusters) == (kept, False)
    trainer = _trainer(config)
    assert len(trainer.generator_config["class_prior"]) == kept
    trainer.train_step()


@pytest.mark.parametrize("model", ["dcgan", "residual"])
def test_freeze_d_keeps_the_first_blocks_of_d_fixed(tiny, model):
    from ganforge.errors import UserError

    trainer = _trainer(tiny(model=model, freeze_d=1, r1=0.1))
    blocks = trainer.discriminator.blocks()
    frozen = [p.detach().clone() for p in blocks[0].parameters()]
    rest = [p.detach().clone() for block in blocks[1:] for p in block.parameters()]
    for _ in range(2):
        trainer.train_step()
    assert all(torch.equal(a, b) for a, b in zip(frozen, blocks[0].parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(rest, (p for block in blocks[1:] for p in block.parameters())))
    with pytest.raises(UserError, match="--freeze-d 99"):
        _trainer(tiny(model=model, freeze_d=99))


def test_adaptive_augmentation_applies_to_a_share_p_of_the_samples():
    from ganforge.train.augment import DiffAugment

    x = torch.randn(400, 1, 8, 8)
    for p in (0.0, 0.25, 1.0):
        augment = DiffAugment(("cutout",), torch.Generator().manual_seed(0), torch.tensor(p))
        changed = (augment(x) != x).flatten(1).any(1).float().mean()
        assert abs(changed - p) < 0.07


@pytest.mark.parametrize("sure, direction", [(True, 1), (False, -1)])
def test_ada_raises_p_while_d_is_sure_of_the_training_images_and_lowers_it_otherwise(sure, direction):
    from ganforge.train.augment import AdaptiveStrength

    ada = AdaptiveStrength(0.6, batch_size=64, device=torch.device("cpu"), interval=4, speed_images=2560)
    ada.probability.fill_(0.5)
    for step in range(1, 9):  # two updates of 64 * 4 / 2560 = 0.1 each
        logits = torch.full((64,), 1.0) if sure else torch.cat([torch.ones(32), -torch.ones(32)])  # r = 1 or 0
        ada.observe(logits)
        ada.update(step)
    assert torch.isclose(ada.probability, torch.tensor(0.5 + direction * 0.2))


def test_ada_is_steered_in_training_and_needs_a_policy(tiny):
    from ganforge.errors import UserError

    trainer = _trainer(tiny(augment="translation,cutout", ada_target=0.01))  # below any D: p must rise
    trainer.discriminator.net[-1].bias.data.fill_(5.0)  # D sure that everything is real: r = 1
    for _ in range(8):
        trainer.train_step()
    assert trainer.ada.probability > 0 and trainer.augment.probability is trainer.ada.probability
    with pytest.raises(UserError, match="--ada-target"):
        tiny(ada_target=0.6)


def test_ada_logs_the_probability_it_steers_beside_the_losses(tiny):
    from ganforge.train.checkpoint import load_checkpoint
    from ganforge.train.loop import train
    from ganforge.train.run_folder import read_records

    run = train(tiny(steps=8, log_every=4, checkpoint_every=8, augment="translation", ada_target=0.5))
    windows = [r for r in read_records((run / "metrics.jsonl").read_text()) if "loss_d" in r]
    assert [r["step"] for r in windows] == [4, 8] and all(0 <= r["augment_p"] <= 1 for r in windows)
    assert windows[-1]["augment_p"] == float(load_checkpoint(run)["ada"]["probability"])  # the value it trains with
    plain = train(tiny(steps=2, log_every=1, augment="translation", out=str(run.parent / "plain")))
    assert not any("augment_p" in r for r in read_records((plain / "metrics.jsonl").read_text()))
