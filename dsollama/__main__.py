"""`python -m dsollama` and the `dsollama` command: run the CLI."""

from __future__ import annotations

import sys


def run() -> None:
    """The CLI, with Ctrl-C during its own start-up (importing click, say) an exit 130 too.

    `dsollama.cli.main` turns an interrupt into one line and exit status 130, but only once
    it exists: an interrupt that lands while `dsollama.cli` is still importing would end in
    a traceback.
    """
    try:
        from dsollama.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
