import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from ganforge.errors import UserError
from ganforge.train.checkpoint import load_checkpoint, save_checkpoint
from ganforge.train.loop import train


def test_sigkill_during_checkpoint_writes_leaves_a_loadable_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    writer = textwrap.dedent(f"""
        import torch
        from ganforge.train.checkpoint import save_checkpoint
        big = torch.randn(8_000_000)  # 32 MB per write: a wide window to be killed in
        step = 1
        while True:
            save_checkpoint({{"format": "ganforge-checkpoint", "version": 1, "step": step, "w": big}},
                            __import__("pathlib").Path({str(folder)!r}), step, keep=2)
            print(step, flush=True)
            step += 1
    """)
    child = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    state = load_checkpoint(tmp_path)
    assert state["step"] >= 1 and state["w"].shape == (8_000_000,)
    for path in folder.glob("step-*.pt"):
        assert load_checkpoint(path)["step"] == int(path.stem.split("-")[1])


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint({"format": "ganforge-checkpoint", "version": 1, "x": torch.ones(1000)}, tmp_path, 1, 1)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_a_flipped_byte_in_tensor_data_is_refused(tmp_path):
    path = save_checkpoint({"format": "ganforge-checkpoint", "version": 1, "x": torch.randn(1000)}, tmp_path, 1, 1)
    data = bytearray(path.read_bytes())
    data[data.index(b"data/0") + 200] ^= 1  # inside the tensor bytes, after the member header
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "ganforge-checkpoint", "version": 1, "payload": Payload()}, path)
    with pytest.raises(UserError, match="pickled code"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path):
    torch.save({"weights": torch.ones(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a ganforge checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no checkpoint found"):
        load_checkpoint(tmp_path / "empty")


def test_resume_with_another_architectures_checkpoint_is_refused(tiny, tmp_path):
    from ganforge.train.loop import resume

    small = train(tiny(out=str(tmp_path / "small")))
    wide = train(tiny(width=16, out=str(tmp_path / "wide")))
    latest = wide / "checkpoints" / "latest.pt"
    before = latest.read_bytes()
    (small / "checkpoints" / "latest.pt").unlink()
    (small / "checkpoints" / "latest.pt").write_bytes(before)
    with pytest.raises(UserError, match="does not match"):
        resume(small, steps=8)
    assert latest.read_bytes() == before
