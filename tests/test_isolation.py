"""ganforge.isolation: items run in child processes; one that kills its process costs that item only."""

import os
import textwrap

import pytest

from ganforge.errors import UserError
from ganforge.isolation import run_isolated

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from ganforge.errors import UserError
    from ganforge.isolation import child_main

    def prepare(job, send):
        if job.get("prepare") == "refuse":
            raise UserError("no reference here")
        if job.get("prepare") == "die":
            os._exit(3)
        send(ready=os.getpid())
        return "state"

    def work(job, state, item, send):
        if item == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if item == "hang":
            time.sleep(60)
        if item == "threads":
            import torch
            send(threads=torch.get_num_threads())
        send(result=[item, state, os.getpid()])

    sys.exit(child_main(prepare, work))
""")


@pytest.fixture
def child_module(tmp_path, monkeypatch):
    (tmp_path / "isolated_child.py").write_text(CHILD)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return "isolated_child"


def test_a_crashing_item_is_reported_and_a_fresh_child_takes_the_rest(child_module):
    messages = []
    run_isolated(child_module, {}, [1, "segfault", 3], messages.append, "test")
    results = [m["result"] for m in messages if "result" in m]
    assert [r[:2] for r in results] == [[1, "state"], [3, "state"]]
    assert results[0][2] != results[1][2]  # item 3 ran in a new process
    crashed = [m for m in messages if "crashed" in m]
    assert crashed == [{"crashed": "segfault", "ending": "killed by SIGSEGV"}]
    starts = [m["start"] for m in messages if "start" in m]
    assert starts == [1, "segfault", 3] and [m["done"] for m in messages if "done" in m] == [1, 3]


def test_a_user_error_while_preparing_is_one_line(child_module):
    with pytest.raises(UserError, match="^no reference here$"):
        run_isolated(child_module, {"prepare": "refuse"}, [1], lambda message: None, "test")


def test_a_child_that_dies_outside_any_item_ends_the_job(child_module):
    with pytest.raises(UserError, match=r"test: the measuring process ended early \(exit code 3\)"):
        run_isolated(child_module, {"prepare": "die"}, [1, 2], lambda message: None, "test")


def test_the_child_does_not_outlive_an_interrupted_parent(child_module):
    pids = []

    def on_message(message):
        if "ready" in message:
            pids.append(message["ready"])
        if message.get("start") == "hang":
            raise KeyboardInterrupt  # as Ctrl-C would, while the child works

    with pytest.raises(KeyboardInterrupt):
        run_isolated(child_module, {}, ["hang"], on_message, "test")
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # killed and reaped, not left running


def test_the_child_uses_the_parents_torch_thread_count(child_module):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `serve --threads 1` or `--workers 2` on 2 cores would
    try:
        messages = []
        run_isolated(child_module, {}, ["threads"], messages.append, "test")
    finally:
        torch.set_num_threads(threads)
    assert [m["threads"] for m in messages if "threads" in m] == [1]
