"""The `mempipe` command's entry point (and `python -m mempipe`): it takes Ctrl-C from its
first moment. Importing the CLI loads pydantic, SQLite and numpy (a second or more on a
busy machine); a Ctrl-C meanwhile would otherwise print a traceback."""

import signal

from mempipe import ctrl_c


def main() -> None:
    signal.signal(signal.SIGINT, ctrl_c.exit_now)
    from mempipe.cli import main as run_cli

    ctrl_c.take_over()
    run_cli()


if __name__ == "__main__":
    main()
