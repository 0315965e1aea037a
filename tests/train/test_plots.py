from ganforge.train.loop import train


def test_progress_video_animates_the_sample_grids(tiny):
    from PIL import Image

    run = train(tiny(steps=6, sample_every=2, progress_video=True))
    with Image.open(run / "progress.gif") as animation:
        assert animation.n_frames == 3  # steps 2, 4 and 6
