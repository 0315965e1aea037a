"""ganforge.files: atomic writes that never follow a planted symlink and leave nothing half-written."""

import os

import pytest

from ganforge.files import TEMP_NAME, atomic_write, atomic_write_bytes, open_exclusive, remove_stale_temps, temp_path


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_bytes(target, "old")
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda handle: (handle.write(b"half"), (_ for _ in ()).throw(RuntimeError("crash"))))
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]


def test_temp_names_are_unpredictable_and_never_follow_a_symlink(tmp_path):
    target = tmp_path / "a.pt"
    names = {temp_path(target).name for _ in range(100)}
    assert len(names) == 100 and all(TEMP_NAME.match(name) for name in names)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = temp_path(target)
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        open_exclusive(planted)
    assert victim.read_text() == "precious"


def test_remove_stale_temps_removes_only_ganforge_temp_files(tmp_path):
    (tmp_path / "sub").mkdir()
    stale = [tmp_path / ".a.pt.tmp-0123456789abcdef", tmp_path / "sub" / ".g.onnx.tmp-0123456789abcdef.onnx"]
    kept = [tmp_path / ".hidden", tmp_path / "a.pt", tmp_path / ".a.pt.tmp-notours"]
    for path in stale + kept:
        path.write_text("x")
    assert remove_stale_temps(tmp_path, recursive=True) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
