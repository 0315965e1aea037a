import json

import pytest

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


def _results(path, seeds, lr=1e-3, data="shapes-folder"):
    runs = [{"seed": s, "train_seconds": 100.0 + s, "real": {"fd": 0.2},
             "generated": {"fd": float(s), "recall": 0.5, "recognised": 0.9}} for s in seeds]
    entry = {"environment": {"cpu": path.stem}, "overrides": {},
             "config": {"data": f"folder:/tmp/{path.stem}", "seed": 0, "out": None, "lr_g": lr}, "runs": runs}
    path.write_text(json.dumps({"data": {data: entry}}))
    return path


def test_seeds_run_apart_combine_into_one_row_with_each_runs_machine(tmp_path):
    out = tmp_path / "all.json"
    first, rest = _results(tmp_path / "a.json", [0]), _results(tmp_path / "b.json", [3, 1, 2, 4])
    assert quality.main(["--combine", f"{first},{rest}", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["data"]["shapes-folder"]
    assert [run["seed"] for run in row["runs"]] == [0, 1, 2, 3, 4]
    assert [run["environment"]["cpu"] for run in row["runs"]] == ["a", "b", "b", "b", "b"]
    assert row["summary"]["seeds"] == 5 and row["summary"]["mean"]["fd"] == 2.0


@pytest.mark.parametrize("second, message", [
    ({"seeds": [1], "lr": 2e-4}, "other settings than in the files before it (lr_g)"),
    ({"seeds": [0]}, "seed 0 is already in the files before it (--replace: the later run replaces it)"),
])
def test_runs_that_are_not_one_row_are_refused(tmp_path, capsys, second, message):
    first, other = _results(tmp_path / "a.json", [0]), _results(tmp_path / "b.json", **second)
    assert quality.main(["--combine", f"{first},{other}", "--out", str(tmp_path / "all.json")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "all.json").exists()


def test_a_row_from_an_older_results_file_is_refused_in_one_line(tmp_path, capsys):
    first, old = _results(tmp_path / "a.json", [0]), tmp_path / "old.json"
    old.write_text(json.dumps({"data": {"shapes-folder": {"runs": [], "summary": {}}}}))
    assert quality.main(["--combine", f"{first},{old}", "--out", str(tmp_path / "all.json")]) == 2
    assert "shapes-folder has no config or environment (written by an older version" in capsys.readouterr().err


def test_the_64_px_folder_rows_train_the_folder_recipe_at_64_px(tmp_path, monkeypatch):
    from PIL import Image

    written = []

    def two_images(path, labelled, resolution):  # the rows' folders, two images instead of 6,000
        written.append((path.name, labelled, resolution))
        for index in range(2):
            folder = path / f"{index:02d}" if labelled else path
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (resolution, resolution)).save(folder / f"{index}.png")
        return path

    monkeypatch.setattr(quality, "shapes_folder", two_images)
    flat = quality.recipe_of("shapes-folder-64", tmp_path, seed=1)
    labelled = quality.recipe_of("shapes-folder-labelled-64", tmp_path, seed=1)
    assert written == [("shapes-folder-64", False, 64), ("shapes-folder-labelled-64", True, 64)]
    assert (flat.resolution, flat.self_conditional, flat.merge_clusters, flat.lr_g) == (64, 40, True, 1e-3)
    assert (labelled.resolution, labelled.self_conditional, labelled.conditional) == (64, 0, True)
    assert quality.recipe_of("shapes-folder", tmp_path, seed=1).resolution == 32


def test_a_seed_run_again_replaces_its_earlier_run_with_replace(tmp_path):
    out = tmp_path / "all.json"
    first, again = _results(tmp_path / "a.json", [0, 1, 2]), _results(tmp_path / "b.json", [1])
    json_again = json.loads(again.read_text())
    json_again["data"]["shapes-folder"]["runs"][0]["generated"]["fd"] = 7.0
    again.write_text(json.dumps(json_again))
    assert quality.main(["--combine", f"{first},{again}", "--replace", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["data"]["shapes-folder"]["runs"]
    assert [(run["seed"], run["source"], run["generated"]["fd"]) for run in runs] == [
        (0, "a.json", 0.0), (1, "b.json", 7.0), (2, "a.json", 2.0)]
    assert runs[1]["replaces"] == "a.json" and "replaces" not in runs[0]
    assert json.loads(out.read_text())["data"]["shapes-folder"]["summary"]["mean"]["fd"] == 3.0


def test_a_combined_file_combines_again_keeping_each_runs_machine(tmp_path):
    both, out = tmp_path / "ab.json", tmp_path / "all.json"
    quality.main(["--combine", f"{_results(tmp_path / 'a.json', [0])},{_results(tmp_path / 'b.json', [1])}",
                  "--out", str(both)])
    assert quality.main(["--combine", f"{both},{_results(tmp_path / 'c.json', [2])}", "--out", str(out)]) == 0
    runs = json.loads(out.read_text())["data"]["shapes-folder"]["runs"]
    assert [(run["environment"]["cpu"], run["source"]) for run in runs] == [("a", "a.json"), ("b", "b.json"),
                                                                             ("c", "c.json")]
