from ganforge.train.loop import train


def test_progress_video_animates_the_sample_grids(tiny):
    from PIL import Image

    run = train(tiny(steps=6, sample_every=2, progress_video="gif"))
    with Image.open(run / "progress.gif") as animation:
        assert animation.n_frames == 3  # steps 2, 4 and 6


def test_progress_video_as_mp4_is_read_back_by_pyav(tiny):
    import av

    run = train(tiny(steps=6, sample_every=2, progress_video="mp4"))
    with av.open(str(run / "progress.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3  # steps 2, 4 and 6
    assert not (run / "progress.gif").exists()


def test_a_run_made_before_the_video_format_could_be_chosen_still_loads():
    from ganforge.train.config import TrainConfig

    assert TrainConfig.from_dict({"data": "ring", "model": "mlp", "progress_video": True}).progress_video == "gif"
    assert TrainConfig.from_dict({"data": "ring", "model": "mlp", "progress_video": False}).progress_video is None
