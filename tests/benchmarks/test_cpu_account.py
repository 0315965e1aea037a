import subprocess
import sys

import pytest

from ganforge.benchmarks.cpu_account import cpu_account, snapshot

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

SERVER = """
import threading, time
def spin():  # 0.6 s of this thread's CPU time, however busy the machine's cores are
    end = time.thread_time() + 0.6
    while time.thread_time() < end:
        pass
print("ready", flush=True)
input()
worker = threading.Thread(target=spin)
worker.start()
worker.join()
print("done", flush=True)
input()
"""


def test_cpu_is_split_between_the_event_loop_its_worker_threads_and_the_load_generator():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        before = snapshot(server.pid)
        server.stdin.write("\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "done"  # its worker thread spun for 0.6 s, the main thread waited
        spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
        subprocess.run([sys.executable, "-c", spin], check=True)  # the "load generator": a reaped child
        account = cpu_account(before, snapshot(server.pid), requests=2, cores=2)
    finally:
        server.kill()
        server.wait()
    assert 0.5e6 / 2 <= account["worker_threads_us"] <= 0.9e6 / 2  # 2 requests: per request, half of each
    assert account["event_loop_us"] < 0.15e6 / 2
    assert 0.25e6 / 2 <= account["load_generator_us"] <= 0.6e6 / 2
    assert 0 < account["busy_fraction"] <= 1
