"""The installed version, read from package metadata only when asked for."""

from __future__ import annotations


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    try:
        return _dist_version("dsollama")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
