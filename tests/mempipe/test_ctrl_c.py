"""Ctrl-C reaches the command every time, even when it lands in a finalizer."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A Ctrl-C sent from inside a finalizer lands there, where Python drops exceptions.
PROGRAM = """
import os, signal, time
from mempipe import ctrl_c

ctrl_c.take_over()

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)

try:
    Finalized()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        pass
    print("ran to the end", flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, while cleaning up
    time.sleep(20)
    print("cleaned up to the end", flush=True)
"""


def test_a_ctrl_c_dropped_by_a_finalizer_still_stops_the_command() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.stdout == "stopped\n"
    assert result.stderr == "mempipe: interrupted\n"  # no "Exception ignored" traceback
    assert result.returncode == 130
