"""What every benchmark writes beside its numbers: progress on stderr (stdout carries the
JSON), and the machine the numbers came from, without which absolute times mean nothing."""

from __future__ import annotations

import os
import platform
import sys


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine() -> str:
    """Processor, cores and system, e.g. "x86_64, 2 cores, Linux"."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
           f"{platform.system()}"
