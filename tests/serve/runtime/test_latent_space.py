import numpy as np
import pytest
import torch

from ganforge.errors import UserError
from ganforge.serve.runtime.latent_space import LatentSpace, parse_classes
from ganforge.train.models.classes import LatentClasses

PRIOR = (0.05, 0.5, 0.001, 0.449)


@pytest.mark.parametrize("groups", [1, 3])
def test_a_chosen_class_is_the_class_the_generator_reads(groups):
    space, reader = LatentSpace(16, PRIOR, groups), LatentClasses(list(PRIOR), groups)
    for chosen in [(k,) * groups for k in range(len(PRIOR))] + ([(3, 0, 2)] if groups == 3 else []):
        for psi in (1.0, 0.3):
            z = torch.from_numpy(space.latents(range(1000), space.controls(psi, chosen)))
            assert (reader.labels(z).view(1000, groups) == torch.tensor(chosen)).all()


def test_truncation_keeps_each_seeds_class():
    space, reader = LatentSpace(16, PRIOR), LatentClasses(list(PRIOR))
    plain = reader.labels(torch.from_numpy(space.latents(range(2000))))
    truncated = reader.labels(torch.from_numpy(space.latents(range(2000), space.controls(0.2))))
    assert torch.equal(plain, truncated)


def test_what_a_model_does_not_have_is_one_clear_error():
    with pytest.raises(UserError, match="no classes to choose"):
        LatentSpace(8).controls(classes=(1,))
    with pytest.raises(UserError, match="out of range: this model has classes 0..3"):
        LatentSpace(8, PRIOR).controls(classes=(4,))
    with pytest.raises(UserError, match="draws 3 classes per sample"):
        LatentSpace(8, PRIOR, 3).controls(classes=(1,))
    with pytest.raises(UserError, match="class numbers"):
        parse_classes("cat")
    assert parse_classes("3,1,4") == (3, 1, 4)
    assert np.array_equal(LatentSpace(8).latents([5]), LatentSpace(8).latents([5], LatentSpace(8).controls()))


def test_classes_of_reads_the_class_as_the_generator_does():
    space, reader = LatentSpace(16, PRIOR, 3), LatentClasses(list(PRIOR), 3)
    z = space.latents(range(3000))
    assert np.array_equal(space.classes_of(z), reader.labels(torch.from_numpy(z)).numpy())
