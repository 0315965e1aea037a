import json

from PIL import Image

from ganforge.benchmarks import recipe_summary


def sweep(path, data, runs):
    """A recipe_sweep.py results file: runs are (candidate, seed, fd, recognised, seconds)."""
    path.write_text(json.dumps({"data": data, "runs": [
        {"candidate": name, "seed": seed, "train_seconds": seconds,
         "evaluations": [{"step": 1500, "fd": 9.0, "recognised": 0.1},
                         {"step": 6000, "fd": fd, "recognised": recognised, "kid": 0.01}]}
        for name, seed, fd, recognised, seconds in runs]}))
    return str(path)


def test_the_table_joins_files_and_counts_the_seeds_each_candidate_beats_the_first_on(tmp_path, capsys):
    first = sweep(tmp_path / "a.json", "digits", [("dcgan", 0, 0.30, 0.95, 600), ("residual", 0, 0.20, 0.96, 610)])
    second = sweep(tmp_path / "b.json", "digits", [("dcgan", 1, 0.20, 0.97, 620), ("residual", 1, 0.40, 0.96, 630),
                                                   ("residual", 2, 0.10, 0.99, 640)])
    picture = tmp_path / "sweep.png"
    assert recipe_summary.main([first, second, "--metrics", "fd,recognised", "--plot", str(picture)]) == 0
    out = capsys.readouterr().out
    # the last evaluation of each run, not the first; the mean and range over the seeds
    assert "| dcgan | 0,1 | 0.25 (0.20-0.30) | 96.0% (95.0-97.0) | 610 (600-620) |  |" in out
    # seed 2 has no DCGAN twin: it counts in the mean, not in the pairs; lower FD wins, higher recognised wins
    assert "| residual | 0,1,2 | 0.23 (0.10-0.40) | 97.0% (96.0-99.0) | 627 (610-640) | fd 1/2, recognised 1/2 |" in out
    assert Image.open(picture).size[0] > 400


def test_candidates_pick_and_order_the_rows_and_the_baseline(tmp_path, capsys):
    path = sweep(tmp_path / "a.json", "digits", [("dcgan", 0, 0.30, 0.95, 600), ("residual", 0, 0.20, 0.96, 610)])
    assert recipe_summary.main([path, "--candidates", "residual,dcgan", "--metrics", "fd"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].startswith("| residual |") and lines[4].startswith("| dcgan |") and lines[4].endswith("fd 0/1 |")


def test_a_run_in_two_files_runs_of_two_data_sets_or_an_unknown_candidate_stop_with_one_line(tmp_path, capsys):
    first = sweep(tmp_path / "a.json", "digits", [("dcgan", 0, 0.30, 0.95, 600)])
    again = sweep(tmp_path / "b.json", "digits", [("dcgan", 0, 0.31, 0.95, 600)])
    other = sweep(tmp_path / "c.json", "stacked-digits", [("dcgan", 1, 2.0, 0.9, 1700)])
    (tmp_path / "d.json").write_text("{not json")
    cases = {(first, again): "dcgan seed 0 is in both", (first, other): "its runs are on 'stacked-digits'",
             (first, str(tmp_path / "d.json")): "not a recipe_sweep.py results file",
             (first, "--candidates", "residual"): "no runs of residual in these files (they hold dcgan)",
             (first, "--metrics", "fd,modes"): "no run has modes in its evaluations"}
    for argv, message in cases.items():
        assert recipe_summary.main(list(argv)) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
