"""Whose calls keep their prompt and answer in the log, and the notice that says so once.

A program that imports dsollama writes no prompt or answer text to disk unless it asks
(``log_content=True``, ``DSOLLAMA_LOG_CONTENT=on`` or ``log_content = true`` in the config
file): its calls are logged as metadata only. `dsollama chat`, `generate` and `serve` are
run by a person who can read their log (as `llm` does), so they keep content by default,
and the first time they do for a log they say so, naming the file and the switch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["CONTENT_BY_DEFAULT", "claim_notice", "keeps_content", "notice_marker", "notice_text"]

CONTENT_BY_DEFAULT = frozenset({"cli", "serve"})
"Sources whose calls keep their content unless the settings say otherwise."


def keeps_content(settings: Settings, source: str) -> bool:
    """Whether calls made by ``source`` ('library', 'cli', 'serve') keep their content.

    An explicit ``log_content`` (argument, environment or config file) always wins.
    """
    if settings.log_content is not None:
        return settings.log_content
    return source in CONTENT_BY_DEFAULT


def notice_marker(log_path: Path) -> Path:
    """The file that records that the notice was shown for this log (``logs.db-notice``).

    Named like SQLite's ``-wal`` and ``-shm`` companions, so deleting ``logs.db*`` starts a
    new log that is announced again.
    """
    return log_path.with_name(log_path.name + "-notice")


def notice_text(log_path: Path) -> str:
    """The one line that tells a person their prompts and answers are being kept."""
    return (
        f"Note: dsollama chat, generate and serve keep prompts and answers in {log_path} "
        "(see `dsollama logs`); DSOLLAMA_LOG_CONTENT=off keeps only metadata, "
        "DSOLLAMA_LOG=off nothing. Shown once."
    )


def claim_notice(log_path: Path) -> bool:
    """True the first time it is called for ``log_path`` on this machine, then False.

    Exclusive creation of the marker makes it true for exactly one of several processes
    starting at once. When the marker cannot be written (a read-only folder) the answer
    is True: better to say it again than never.
    """
    marker = notice_marker(log_path)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except OSError:
        return True
    try:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"content-logging notice shown {stamp}\n".encode())
    except OSError:
        pass  # the marker exists, which is all that counts
    finally:
        os.close(fd)
    return True
