import json

from ganforge.benchmarks import merge_heights


def test_the_weighed_merge_finds_the_shapes_kinds_where_the_centroids_alone_do_not(tmp_path, capsys):
    out = tmp_path / "merge.json"
    assert merge_heights.main(["--cases", "shapes:framed16", "--seeds", "3", "--out", str(out)]) == 0
    row, = json.loads(out.read_text())["rows"]
    assert (row["weighed_classes"], row["centroids_classes"], row["merged_classes"]) == (18, 40, 18)
    assert row["weighed_largest_rise"] > 2 > 1.5 > row["centroids_largest_rise"] and row["merged_purity"] == 1.0
    assert "| shapes | framed16 | 3 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["environment"]["cores"] >= 1
