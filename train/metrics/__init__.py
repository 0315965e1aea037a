"""Quality metrics as pure functions (one family per file), shared by training's --eval-every and `ganforge eval`.

- ``modes``: 2D mixtures: modes captured, high-quality share, reverse KL (PacGAN's protocol).
- ``frechet``: Fréchet distance and KID between two feature sets (StyleGAN2-ADA's definitions).
- ``prdc``: precision, recall, density and coverage (Naeem et al. 2020).
- ``memorization``: the share of samples closer to a training image than training images are to each other.
- ``features``: the feature extractors: a domain classifier trained here, or a fixed-seed random embedding.
- ``evaluate``: all of the above for one data source, against cached real features.
"""

from .modes import kl_to_uniform, mode_coverage

__all__ = ["kl_to_uniform", "mode_coverage"]
