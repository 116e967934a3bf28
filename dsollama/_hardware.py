"""What this machine can run: total RAM, accelerator memory, and the model to recommend.

Probing (`detect_hardware`) reads ``/proc/meminfo`` on Linux, ``sysctl`` on macOS and asks
``nvidia-smi`` when it is installed; it needs no extra dependency and never raises. The
decision (`recommend`) is pure: it takes a `Hardware` value, so tests and GUIs can feed it
any machine they like.

Memory figures in the catalogue (``memory_gb``) are decimal gigabytes needed at a 4K
context; RAM and VRAM are reported by the system in binary units and kept here in bytes.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ._catalogue import Catalogue, LocalModel

__all__ = [
    "GPU",
    "Hardware",
    "ModelFit",
    "Recommendation",
    "build_hardware",
    "detect_hardware",
    "fit_model",
    "format_bytes",
    "parse_cgroup_limit",
    "parse_meminfo",
    "parse_nvidia_smi",
    "recommend",
]

GB = 1_000_000_000
GIB = 1024**3

# The share of memory a model may use, leaving room for what the numbers leave out.
RAM_HEADROOM = 0.25
"On the CPU the model shares RAM with the OS and every other program."
VRAM_HEADROOM = 0.10
"On a GPU the KV cache grows with the context beyond the catalogue's 4K figure."
# Apple silicon: Metal lets the GPU wire about two thirds of unified memory on small
# machines and three quarters on larger ones (macOS's recommendedMaxWorkingSetSize).
APPLE_GPU_SHARE_SMALL = 2 / 3
APPLE_GPU_SHARE_LARGE = 3 / 4
APPLE_LARGE_RAM = 36 * GIB
# Models above this on the CPU answer at one to three tokens a second: usable for a test,
# not for work, so the recommendation stops there (a tag can still be pulled by name).
CPU_MAX_MEMORY_GB = 12.0
PREFERRED_FAMILY = "deepseek-r1"
NVIDIA_SMI_TIMEOUT = 5.0

Runner = Callable[[Sequence[str], float], "str | None"]
"Runs a command with a timeout; returns its stdout, or None when it failed."
Reader = Callable[[str], "str | None"]
"Reads a text file; returns None when it cannot."


@dataclass(frozen=True)
class GPU:
    """One accelerator and the memory it offers to models."""

    name: str
    memory_bytes: int
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Hardware:
    """The machine as far as model placement is concerned."""

    ram_bytes: int | None
    "Total RAM (or the container's memory limit when lower); None when it could not be read."
    vram_bytes: int = 0
    "Memory models can use on the accelerator(s): discrete VRAM, or the GPU share of unified memory."
    unified: bool = False
    "Apple silicon: CPU and GPU share one pool, so RAM and VRAM are the same memory."
    gpus: tuple[GPU, ...] = ()
    notes: tuple[str, ...] = ()
    "Assumptions made while probing, in words a person can check."
    system: str = ""
    machine: str = ""


@dataclass(frozen=True)
class ModelFit:
    """Whether one catalogue model fits this machine, and where it would run."""

    tag: str
    need_bytes: int
    on_gpu: bool
    "Fits the accelerator's budget (discrete VRAM or unified memory)."
    on_cpu: bool
    "Fits the RAM budget, running on the CPU."

    @property
    def fits(self) -> bool:
        return self.on_gpu or self.on_cpu

    @property
    def where(self) -> str:
        """'gpu', 'cpu' or '' (does not fit)."""
        return "gpu" if self.on_gpu else "cpu" if self.on_cpu else ""


@dataclass(frozen=True)
class Recommendation:
    """The model to pull on this machine, and why."""

    model: LocalModel | None
    "None when no DeepSeek model fits (use the hosted API instead)."
    runs_on: Literal["gpu", "unified", "cpu"] | None
    budget_bytes: int
    "Memory the chosen placement may use, after headroom."
    reason: str
    assumptions: tuple[str, ...]
    fits: Mapping[str, ModelFit] = field(default_factory=dict)
    "Every catalogue tag → where it fits, for tables."

    @property
    def tag(self) -> str | None:
        return self.model.tag if self.model else None


# -- pure parsing ------------------------------------------------------------------------


def parse_meminfo(text: str) -> int | None:
    """Total RAM in bytes from ``/proc/meminfo`` text.

    >>> parse_meminfo("MemTotal:       16318412 kB\\nMemFree: 1 kB\\n")
    16710053888
    >>> parse_meminfo("garbage") is None
    True
    """
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip() == "MemTotal":
            parts = rest.split()
            if parts and parts[0].isdigit():
                unit = parts[1].lower() if len(parts) > 1 else "kb"
                factor = 1024 if unit == "kb" else 1
                return int(parts[0]) * factor
    return None


def parse_cgroup_limit(text: str) -> int | None:
    """A cgroup v2 ``memory.max`` value in bytes (None for ``max``).

    >>> parse_cgroup_limit("8589934592\\n")
    8589934592
    >>> parse_cgroup_limit("max\\n") is None
    True
    """
    value = text.strip()
    return int(value) if value.isdigit() else None


def parse_nvidia_smi(text: str) -> tuple[GPU, ...]:
    """GPUs from ``nvidia-smi --query-gpu=memory.total,name --format=csv,noheader,nounits``.

    Memory comes first because names may contain commas; values are MiB.

    >>> parse_nvidia_smi("24564, NVIDIA GeForce RTX 4090\\n8192, Tesla T4\\n")
    (GPU(name='NVIDIA GeForce RTX 4090', memory_bytes=25757220864, vendor='nvidia'), GPU(name='Tesla T4', memory_bytes=8589934592, vendor='nvidia'))
    >>> parse_nvidia_smi("[N/A], Some GPU\\n")
    ()
    """
    gpus = []
    for line in text.splitlines():
        memory, _, name = line.partition(",")
        memory = memory.strip()
        if not memory.isdigit():
            continue
        gpus.append(GPU(name=name.strip() or "NVIDIA GPU", memory_bytes=int(memory) * 1024 * 1024))
    return tuple(gpus)


def format_bytes(n: float) -> str:
    """Decimal units, as Ollama and ollama.com print sizes.

    >>> format_bytes(5_200_000_000)
    '5.2 GB'
    >>> format_bytes(776_000_000)
    '776 MB'
    >>> format_bytes(512)
    '512 B'
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{round(n)} B"


def build_hardware(
    *,
    system: str,
    machine: str,
    ram_bytes: int | None,
    gpus: Sequence[GPU] = (),
    cgroup_limit: int | None = None,
    notes: Sequence[str] = (),
) -> Hardware:
    """Combine probe results into a `Hardware` value, recording each assumption."""
    out = list(notes)
    if ram_bytes is None:
        out.append("could not read the total RAM")
    elif cgroup_limit is not None and cgroup_limit < ram_bytes:
        out.append(
            f"a container memory limit of {format_bytes(cgroup_limit)} applies "
            f"(the machine has {format_bytes(ram_bytes)})"
        )
        ram_bytes = cgroup_limit
    unified = system == "Darwin" and machine in {"arm64", "aarch64"}
    vram = 0
    if unified and ram_bytes is not None:
        share = APPLE_GPU_SHARE_LARGE if ram_bytes > APPLE_LARGE_RAM else APPLE_GPU_SHARE_SMALL
        vram = int(ram_bytes * share)
        out.append(
            f"Apple silicon: unified memory, the GPU can use about {share:.0%} of RAM "
            f"({format_bytes(vram)}) by default"
        )
    elif gpus:
        vram = sum(g.memory_bytes for g in gpus)
        if len(gpus) > 1:
            out.append(
                f"{len(gpus)} GPUs: Ollama splits a model across them, so their memory is added up"
            )
    elif system == "Darwin":
        out.append("Intel Mac: no GPU Ollama can use; models run on the CPU")
    else:
        out.append(
            "no NVIDIA GPU found (AMD and Intel GPUs are not detected): "
            "assuming models run on the CPU from RAM"
        )
    return Hardware(
        ram_bytes=ram_bytes,
        vram_bytes=vram,
        unified=unified,
        gpus=tuple(gpus),
        notes=tuple(out),
        system=system,
        machine=machine,
    )


# -- probing -----------------------------------------------------------------------------


def _run(cmd: Sequence[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def detect_hardware(
    *,
    system: str | None = None,
    machine: str | None = None,
    run: Runner | None = None,
    read: Reader | None = None,
    which: Callable[[str], str | None] | None = None,
) -> Hardware:
    """Probe this machine. Never raises: what cannot be read is said in ``notes``."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    run = run or _run
    read = read or _read
    which = which or shutil.which
    ram: int | None = None
    cgroup: int | None = None
    notes: list[str] = []
    if system == "Linux":
        text = read("/proc/meminfo")
        ram = parse_meminfo(text) if text else None
        limit = read("/sys/fs/cgroup/memory.max")
        cgroup = parse_cgroup_limit(limit) if limit else None
    elif system == "Darwin":
        out = run(["sysctl", "-n", "hw.memsize"], NVIDIA_SMI_TIMEOUT)
        ram = int(out.strip()) if out and out.strip().isdigit() else None
    else:
        notes.append(f"{system or sys.platform}: RAM detection is not supported here")
    gpus: tuple[GPU, ...] = ()
    if system != "Darwin":
        exe = which("nvidia-smi")
        if exe:
            out = run(
                [exe, "--query-gpu=memory.total,name", "--format=csv,noheader,nounits"],
                NVIDIA_SMI_TIMEOUT,
            )
            gpus = parse_nvidia_smi(out) if out else ()
            if not gpus:
                notes.append("nvidia-smi is installed but reported no GPU (driver not loaded?)")
    return build_hardware(
        system=system, machine=machine, ram_bytes=ram, gpus=gpus, cgroup_limit=cgroup, notes=notes
    )


# -- the decision --------------------------------------------------------------------------


def _budgets(hw: Hardware) -> tuple[int, int]:
    """(accelerator budget, RAM budget) in bytes, after headroom."""
    gpu = int(hw.vram_bytes * (1 - VRAM_HEADROOM))
    ram = int(hw.ram_bytes * (1 - RAM_HEADROOM)) if hw.ram_bytes else 0
    if hw.unified:
        ram = 0  # one pool: the GPU share above already is the budget
    return gpu, ram


def fit_model(model: LocalModel, hw: Hardware) -> ModelFit:
    """Where ``model`` fits on ``hw`` (GPU first, else CPU from RAM)."""
    need = int(model.memory_gb * GB) or model.size_bytes
    gpu_budget, ram_budget = _budgets(hw)
    return ModelFit(
        tag=model.tag,
        need_bytes=need,
        on_gpu=0 < need <= gpu_budget,
        on_cpu=0 < need <= ram_budget,
    )


def recommend(
    catalogue: Catalogue, hw: Hardware, *, family: str = PREFERRED_FAMILY
) -> Recommendation:
    """The largest tag of ``family`` that fits with headroom, and the assumptions behind it.

    Preference order: the largest model that fits the accelerator (fast); else the largest
    that fits RAM on the CPU, up to a size the CPU can still answer with at a useful speed.
    """
    fits = {tag: fit_model(model, hw) for tag, model in catalogue.local.items()}
    assumptions = list(hw.notes)
    candidates = sorted(
        (m for m in catalogue.local.values() if m.library == family),
        key=lambda m: (m.memory_gb, m.size_bytes),
        reverse=True,
    )
    gpu_budget, ram_budget = _budgets(hw)
    if hw.ram_bytes is None and not hw.vram_bytes:
        default = catalogue.resolve(family)
        assumptions.append("memory unknown: recommending the default tag without checking fit")
        return Recommendation(
            model=default,
            runs_on=None,
            budget_bytes=0,
            reason=f"{default.tag if default else family} is the library default",
            assumptions=tuple(assumptions),
            fits=fits,
        )
    runs_on: Literal["gpu", "unified", "cpu"] = "unified" if hw.unified else "gpu"
    if gpu_budget:
        label = "unified memory" if hw.unified else "VRAM"
        assumptions.append(
            f"kept {VRAM_HEADROOM:.0%} {label} headroom for the context (KV cache): "
            f"budget {format_bytes(gpu_budget)}"
        )
        for model in candidates:
            if fits[model.tag].on_gpu:
                where = "in unified memory" if hw.unified else "on the GPU"
                return Recommendation(
                    model=model,
                    runs_on=runs_on,
                    budget_bytes=gpu_budget,
                    reason=(
                        f"largest {family} tag that fits {where} "
                        f"(needs about {model.memory_gb:g} GB of {format_bytes(gpu_budget)})"
                    ),
                    assumptions=tuple(assumptions),
                    fits=fits,
                )
    if ram_budget:
        prefix = "the model runs on the CPU from RAM"
        if gpu_budget:
            prefix = "no model fits the GPU: " + prefix
        assumptions.append(
            f"{prefix}; kept {RAM_HEADROOM:.0%} headroom for the system: "
            f"budget {format_bytes(ram_budget)}"
        )
        assumptions.append(
            f"on the CPU, models needing more than {CPU_MAX_MEMORY_GB:g} GB answer too slowly "
            "to recommend (pull a bigger tag by name if you want it)"
        )
        for model in candidates:
            if fits[model.tag].on_cpu and model.memory_gb <= CPU_MAX_MEMORY_GB:
                return Recommendation(
                    model=model,
                    runs_on="cpu",
                    budget_bytes=ram_budget,
                    reason=(
                        f"largest {family} tag that fits in RAM on the CPU "
                        f"(needs about {model.memory_gb:g} GB of {format_bytes(ram_budget)})"
                    ),
                    assumptions=tuple(assumptions),
                    fits=fits,
                )
    smallest = candidates[-1] if candidates else None
    need = f"{smallest.memory_gb:g} GB" if smallest else "more memory"
    return Recommendation(
        model=None,
        runs_on=None,
        budget_bytes=max(gpu_budget, ram_budget),
        reason=(
            f"no {family} tag fits: the smallest needs about {need}, the budget is "
            f"{format_bytes(max(gpu_budget, ram_budget))}; use the hosted API"
        ),
        assumptions=tuple(assumptions),
        fits=fits,
    )
