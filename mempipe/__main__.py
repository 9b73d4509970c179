"""The `mempipe` command's entry point (and `python -m mempipe`): it takes Ctrl-C from its
first moment. Importing the CLI loads pydantic, SQLite and numpy (a second or more on a
busy machine); a Ctrl-C meanwhile would otherwise print a traceback."""

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)
    from mempipe.cli import main as run_cli

    signal.signal(signal.SIGINT, signal.default_int_handler)  # the CLI handles it now
    run_cli()


def _interrupted(signum: int, frame: object) -> None:
    print("mempipe: interrupted", file=sys.stderr)
    os._exit(130)


if __name__ == "__main__":
    main()
