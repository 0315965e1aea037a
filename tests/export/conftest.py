import pytest

from ganforge.train.config import TrainConfig
from ganforge.train.loop import train


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Tiny trained runs: dcgan at 16/32/64 px, class-conditional dcgans at 16 px (digits: one class per sample;
    stacked digits: three; digits without their labels: six pseudo-classes), residual models (a conditional one at
    16 px without blocks at full size, one at 64 px in colour with BatchNorm in G) and a 2D mlp."""
    root = tmp_path_factory.mktemp("runs")
    common = dict(steps=2, batch_size=8, quiet=True, device="cpu", precision="fp32", checkpoint_every=2,
                  sample_every=2, eval_every=0)
    made = {f"dcgan{r}": train(TrainConfig(data="shapes" if r == 64 else "digits", model="dcgan", resolution=r,
                                           width=8, z_dim=16, out=str(root / f"dcgan{r}"), **common))
            for r in (16, 32, 64)}
    made["conditional16"] = train(TrainConfig(data="digits", model="dcgan", resolution=16, width=8, z_dim=16,
                                              conditional=True, out=str(root / "conditional16"), **common))
    made["stacked16"] = train(TrainConfig(data="stacked-digits", model="dcgan", resolution=16, width=8, z_dim=16,
                                          conditional=True, out=str(root / "stacked16"), **common))
    made["selfcond16"] = train(TrainConfig(data="digits", model="dcgan", resolution=16, width=8, z_dim=16,
                                           labels="ignore", self_conditional=6, out=str(root / "selfcond16"),
                                           **common))
    made["residual16"] = train(TrainConfig(data="digits", model="residual", resolution=16, width=8, z_dim=16,
                                           conditional=True, loss="rpgan", r1=0.1, r2=0.1, full_size_blocks=0,
                                           out=str(root / "residual16"), **common))
    made["residual64"] = train(TrainConfig(data="shapes", model="residual", resolution=64, width=8, z_dim=16,
                                           depth=2, batch_norm_g=True, out=str(root / "residual64"), **common))
    made["ring"] = train(TrainConfig(data="ring", model="mlp", width=32, out=str(root / "ring"), **common))
    return made
