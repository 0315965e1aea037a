from ganforge.benchmarks import fine_tune
from ganforge.train.data import load_data
from ganforge.train.data.shapes import COLOURS, SHAPES


def test_the_small_set_and_the_held_out_set_are_disjoint_images_of_one_family(tmp_path):
    small, held_out = fine_tune.family_folders(tmp_path, "triangle", small=20, held_out=30)
    trained = {int(p.stem) for p in small.glob("*.png")}
    measured = {int(p.stem) for p in held_out.glob("*.png")}
    assert len(trained) == 20 and len(measured) == 30 and not trained & measured
    labels = load_data("shapes", fine_tune.RESOLUTION, seed=1).labels
    assert {int(labels[i]) // len(COLOURS) for i in trained | measured} == {SHAPES.index("triangle")}


def test_the_answer_is_the_first_checkpoint_at_or_below_the_target():
    points = [{"step": 250, "fd": 3.0}, {"step": 500, "fd": 1.9}, {"step": 750, "fd": 2.1}]
    assert fine_tune.first_reaching(points, 2.0) == 500
    assert fine_tune.first_reaching(points, 1.0) is None
