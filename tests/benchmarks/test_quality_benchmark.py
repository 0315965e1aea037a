from ganforge.benchmarks import quality


def test_the_kept_grid_is_the_runs_last_one(tmp_path):
    samples = tmp_path / "run" / "samples"
    samples.mkdir(parents=True)
    for step in (1500, 12000, 9000):
        (samples / f"step-{step:06d}.png").write_bytes(f"grid {step}".encode())
    quality.keep_last_grid(tmp_path / "run", tmp_path / "grids" / "shapes-folder-seed0.png")
    assert (tmp_path / "grids" / "shapes-folder-seed0.png").read_bytes() == b"grid 12000"


def test_a_run_without_grids_keeps_none(tmp_path):
    (tmp_path / "run" / "samples").mkdir(parents=True)
    quality.keep_last_grid(tmp_path / "run", tmp_path / "grids" / "x.png")
    assert not (tmp_path / "grids").exists()
