"""Start-up: `dsollama --help` wall time, and import time and memory next to `ollama`'s.

Every measurement is a fresh interpreter (``subprocess``), repeated, reporting the median:

- ``dsollama --help``: the console script's wall time, start to exit (target < 150 ms);
- ``python -c pass``: the interpreter alone, to subtract;
- ``import dsollama`` (lazy: names load on first use) and ``from dsollama import Client``
  (what using it costs), next to ``import ollama``: time measured inside the child around
  the import, and the peak resident memory it adds over a bare interpreter.

    python benchmarks/bench_startup.py [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import percentile

# Runs in the child: import time around the statement, and peak RSS in KiB. On Linux the
# peak comes from /proc (VmHWM): getrusage's ru_maxrss survives exec, so a child started
# by a large parent would report the parent's size.
_PROBE = """
import json, sys, time
t = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t
rss = None
try:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1])
except OSError:
    pass
if rss is None:
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": elapsed, "maxrss_kib": rss, "modules": len(sys.modules)}}))
"""

IMPORTS = {
    "bare": "pass",
    "import dsollama": "import dsollama",
    "from dsollama import Client": "from dsollama import Client",
    "import ollama": "import ollama",
    "from ollama import Client": "from ollama import Client",
}


def _help_command() -> list[str]:
    script = Path(sys.executable).with_name("dsollama")
    if script.exists():
        return [str(script), "--help"]
    found = shutil.which("dsollama")
    return [found, "--help"] if found else [sys.executable, "-m", "dsollama", "--help"]


def _wall(command: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def _probe(statement: str, repeat: int) -> dict[str, float]:
    seconds, rss, modules = [], [], 0
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _PROBE.format(statement=statement)],
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(out.stdout)
        seconds.append(data["seconds"])
        rss.append(data["maxrss_kib"])
        modules = data["modules"]
    return {
        "median_s": percentile(seconds, 50),
        "maxrss_mib": percentile(rss, 50) / 1024,
        "modules": modules,
    }


def run(repeat: int = 15) -> dict[str, Any]:
    help_times = _wall(_help_command(), repeat)
    bare_times = _wall([sys.executable, "-c", "pass"], repeat)
    imports = {name: _probe(statement, repeat) for name, statement in IMPORTS.items()}
    bare_rss = imports["bare"]["maxrss_mib"]
    for data in imports.values():
        data["added_mib"] = data["maxrss_mib"] - bare_rss
    help_median = percentile(help_times, 50)
    return {
        "repeat": repeat,
        "help": {
            "median_s": help_median,
            "min_s": min(help_times),
            "target_s": 0.150,
            "met": help_median < 0.150,
        },
        "python_bare_s": percentile(bare_times, 50),
        "imports": imports,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
