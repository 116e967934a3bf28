"""What this machine can run: memory, accelerators, CPU cores, and the model to recommend.

Probing (`detect_hardware`) reads ``/proc/meminfo``, ``/proc/cpuinfo``, the cgroup limits
and (when readable, which needs root) the SMBIOS memory table on Linux, ``sysctl`` on
macOS, and asks ``nvidia-smi`` when it is installed; it needs no extra dependency and never
raises. The decision (`recommend`) is pure: it takes a `Hardware` value, so tests and GUIs
can feed it any machine they like. It picks the largest model that fits *and* answers at a
usable speed, estimated by `dsollama._speed`.

Memory figures in the catalogue (``memory_gb``) are decimal gigabytes needed at a 4K
context; RAM and VRAM are reported by the system in binary units and kept here in bytes.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._catalogue import Catalogue, LocalModel
from ._machine import GPU, Hardware
from ._speed import (
    DEFAULT_MIN_SPEED,
    MachineSpeed,
    SpeedData,
    format_speed,
    load_speed_data,
    machine_speed,
)

if TYPE_CHECKING:
    from ._config import Settings

__all__ = [
    "GPU",
    "Hardware",
    "ModelFit",
    "Recommendation",
    "build_hardware",
    "detect_hardware",
    "fit_model",
    "format_bytes",
    "parse_cgroup_cpus",
    "parse_cgroup_limit",
    "parse_cpuinfo",
    "parse_meminfo",
    "parse_nvidia_smi",
    "parse_smbios_memory",
    "recommend",
    "recommend_for",
    "usable_cores",
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
PREFERRED_FAMILY = "deepseek-r1"
NVIDIA_SMI_TIMEOUT = 5.0
SMBIOS_TABLE = "/sys/firmware/dmi/tables/DMI"
"The raw SMBIOS structure table (readable by root only on most systems)."
# SMBIOS 'Memory Device' (type 17) memory type codes, from the DMTF specification.
SMBIOS_MEMORY_TYPES = {
    0x18: "DDR3",
    0x1A: "DDR4",
    0x1D: "LPDDR3",
    0x1E: "LPDDR4",
    0x22: "DDR5",
    0x23: "LPDDR5",
}

Runner = Callable[[Sequence[str], float], "str | None"]
"Runs a command with a timeout; returns its stdout, or None when it failed."
Reader = Callable[[str], "str | None"]
"Reads a text file; returns None when it cannot."
BytesReader = Callable[[str], "bytes | None"]
"Reads a binary file; returns None when it cannot."


@dataclass(frozen=True)
class ModelFit:
    """Whether one catalogue model fits this machine, and where it would run."""

    tag: str
    need_bytes: int
    on_gpu: bool
    "Fits the accelerator's budget (discrete VRAM or unified memory)."
    on_cpu: bool
    "Fits the RAM budget, running on the CPU."
    gpu_share: float = 0.0
    "Share of the model on the accelerator: 1 when it fits there, a part when only RAM holds it."
    tokens_per_second: float | None = None
    "Estimated decode speed where it would run (None when it does not fit)."

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
    runs_on: Literal["gpu", "unified", "gpu+cpu", "cpu"] | None
    "'gpu+cpu': only part of the model fits VRAM; Ollama runs the other layers on the CPU."
    budget_bytes: int
    "Memory the chosen placement may use, after headroom."
    reason: str
    assumptions: tuple[str, ...]
    fits: Mapping[str, ModelFit] = field(default_factory=dict)
    "Every catalogue tag → where it fits and how fast it would answer, for tables."
    tokens_per_second: float | None = None
    "Estimated decode speed of the recommended model."
    min_speed: float = DEFAULT_MIN_SPEED
    "The usable speed the recommendation aimed for (tokens/s)."
    slow: bool = False
    "No model that fits reaches ``min_speed``: the recommendation is the fastest, and slow."

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


def parse_cpuinfo(text: str) -> tuple[str, int | None]:
    """(model name, physical cores) from ``/proc/cpuinfo``.

    Physical cores are the distinct (physical id, core id) pairs: hyper-threads share a
    core's arithmetic units, so they add little to decoding. Without those fields (ARM,
    some VMs) each processor counts as a core.

    >>> parse_cpuinfo("processor: 0\\nmodel name: AMD EPYC\\nphysical id: 0\\ncore id: 0\\n\\n"
    ...               "processor: 1\\nmodel name: AMD EPYC\\nphysical id: 0\\ncore id: 0\\n")
    ('AMD EPYC', 1)
    >>> parse_cpuinfo("processor: 0\\n\\nprocessor: 1\\n\\nHardware: BCM2835\\n")
    ('', 2)
    """
    name = ""
    cores: set[tuple[str, str]] = set()
    processors = 0
    all_have_ids = True
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        processors += 1
        name = name or fields.get("model name", "")
        if "physical id" in fields and "core id" in fields:
            cores.add((fields["physical id"], fields["core id"]))
        else:
            all_have_ids = False
    if not processors:
        return name, None
    return name, len(cores) if all_have_ids else processors


def parse_cgroup_cpus(text: str) -> float | None:
    """CPUs a cgroup v2 ``cpu.max`` quota allows (None when unlimited).

    >>> parse_cgroup_cpus("200000 100000\\n"), parse_cgroup_cpus("max 100000\\n")
    (2.0, None)
    """
    parts = text.split()
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and int(parts[1]) > 0:
        return int(parts[0]) / int(parts[1])
    return None


def usable_cores(physical: int | None, available: int | None, quota: float | None) -> int | None:
    """Cores a model can use: the fewest of physical cores, CPUs this process may run on,
    and a container's CPU quota (rounded down, at least one).

    >>> usable_cores(8, 16, None), usable_cores(8, 16, 2.5), usable_cores(None, None, None)
    (8, 2, None)
    """
    known = [n for n in (physical, available) if n]
    if quota:
        known.append(max(1, int(quota)))
    return min(known) if known else None


def parse_smbios_memory(table: bytes) -> tuple[str | None, int | None, int | None]:
    """(memory type, MT/s of the slowest module, modules installed) from a raw SMBIOS table.

    Reads the 'Memory Device' (type 17) structures: type at offset 0x12, speed at 0x15 and
    the configured speed (what the modules really run at) at 0x20; a size of 0 is an empty
    slot. Anything unreadable is None.

    >>> dimm = bytes([17, 0x22, 0, 0]) + bytes(8) + (16384).to_bytes(2, "little") + bytes(4)
    >>> dimm += bytes([0x22]) + bytes(2) + (5600).to_bytes(2, "little") + bytes(9)
    >>> dimm += (5200).to_bytes(2, "little") + b"\\0\\0"
    >>> parse_smbios_memory(dimm + bytes([127, 4, 0, 0, 0, 0]))
    ('DDR5', 5200, 1)
    >>> parse_smbios_memory(b"")
    (None, None, None)
    """
    kinds: list[str] = []
    speeds: list[int] = []
    modules = 0
    i = 0
    while i + 4 <= len(table):
        kind, length = table[i], table[i + 1]
        if length < 4 or i + length > len(table):
            break
        if kind == 17 and length >= 0x17:
            entry = table[i : i + length]
            if int.from_bytes(entry[0x0C:0x0E], "little") != 0:
                modules += 1
                if entry[0x12] in SMBIOS_MEMORY_TYPES:
                    kinds.append(SMBIOS_MEMORY_TYPES[entry[0x12]])
                speed = int.from_bytes(entry[0x15:0x17], "little")
                if length >= 0x22:
                    configured = int.from_bytes(entry[0x20:0x22], "little")
                    speed = configured if configured not in (0, 0xFFFF) else speed
                if speed not in (0, 0xFFFF):
                    speeds.append(speed)
        if kind == 127:  # end of table
            break
        # The formatted area is followed by its strings, ended by two NUL bytes.
        end = table.find(b"\0\0", i + length)
        if end < 0:
            break
        i = end + 2
    return (
        kinds[0] if kinds else None,
        min(speeds) if speeds else None,
        modules or None,
    )


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
    cpu_cores: int | None = None,
    cpu_name: str = "",
    memory_type: str | None = None,
    memory_mts: int | None = None,
    memory_modules: int | None = None,
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
        cpu_cores=cpu_cores,
        cpu_name=cpu_name,
        memory_type=memory_type,
        memory_mts=memory_mts,
        memory_modules=memory_modules,
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


def _read_bytes(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _available_cpus() -> int | None:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _int_or_none(text: str | None) -> int | None:
    return int(text.strip()) if text and text.strip().isdigit() else None


def detect_hardware(
    *,
    system: str | None = None,
    machine: str | None = None,
    run: Runner | None = None,
    read: Reader | None = None,
    which: Callable[[str], str | None] | None = None,
    read_bytes: BytesReader | None = None,
    cpu_count: Callable[[], int | None] | None = None,
) -> Hardware:
    """Probe this machine. Never raises: what cannot be read is said in ``notes``."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    run = run or _run
    read = read or _read
    which = which or shutil.which
    read_bytes = read_bytes or _read_bytes
    available = (cpu_count or _available_cpus)()
    ram: int | None = None
    cgroup: int | None = None
    notes: list[str] = []
    cpu_name = ""
    cores: int | None = available
    memory: tuple[str | None, int | None, int | None] = (None, None, None)
    if system == "Linux":
        text = read("/proc/meminfo")
        ram = parse_meminfo(text) if text else None
        limit = read("/sys/fs/cgroup/memory.max")
        cgroup = parse_cgroup_limit(limit) if limit else None
        info = read("/proc/cpuinfo")
        cpu_name, physical = parse_cpuinfo(info) if info else ("", None)
        quota_text = read("/sys/fs/cgroup/cpu.max")
        quota = parse_cgroup_cpus(quota_text) if quota_text else None
        cores = usable_cores(physical, available, quota)
        if quota and physical and quota < physical:
            notes.append(
                f"a container CPU quota of {quota:g} CPUs applies (the machine has {physical} cores)"
            )
        table = read_bytes(SMBIOS_TABLE)
        memory = parse_smbios_memory(table) if table else (None, None, None)
    elif system == "Darwin":
        out = run(["sysctl", "-n", "hw.memsize"], NVIDIA_SMI_TIMEOUT)
        ram = int(out.strip()) if out and out.strip().isdigit() else None
        brand = run(["sysctl", "-n", "machdep.cpu.brand_string"], NVIDIA_SMI_TIMEOUT)
        cpu_name = brand.strip() if brand else ""
        physical = _int_or_none(run(["sysctl", "-n", "hw.physicalcpu"], NVIDIA_SMI_TIMEOUT))
        cores = usable_cores(physical, available, None)
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
        system=system,
        machine=machine,
        ram_bytes=ram,
        gpus=gpus,
        cgroup_limit=cgroup,
        notes=notes,
        cpu_cores=cores,
        cpu_name=cpu_name,
        memory_type=memory[0],
        memory_mts=memory[1],
        memory_modules=memory[2],
    )


# -- the decision --------------------------------------------------------------------------


def _budgets(hw: Hardware) -> tuple[int, int]:
    """(accelerator budget, RAM budget) in bytes, after headroom."""
    gpu = int(hw.vram_bytes * (1 - VRAM_HEADROOM))
    ram = int(hw.ram_bytes * (1 - RAM_HEADROOM)) if hw.ram_bytes else 0
    if hw.unified:
        ram = 0  # one pool: the GPU share above already is the budget
    return gpu, ram


def fit_model(model: LocalModel, hw: Hardware, speed: MachineSpeed | None = None) -> ModelFit:
    """Where ``model`` fits on ``hw`` (GPU first, else CPU from RAM), and with ``speed``
    how fast it would answer there."""
    need = int(model.memory_gb * GB) or model.size_bytes
    gpu_budget, ram_budget = _budgets(hw)
    on_gpu = 0 < need <= gpu_budget
    on_cpu = 0 < need <= ram_budget
    share = 1.0 if on_gpu else min(gpu_budget / need, 1.0) if on_cpu and need else 0.0
    tokens = speed.tokens_per_second(model, share) if speed and (on_gpu or on_cpu) else None
    return ModelFit(
        tag=model.tag,
        need_bytes=need,
        on_gpu=on_gpu,
        on_cpu=on_cpu,
        gpu_share=share,
        tokens_per_second=tokens,
    )


def _where(fit: ModelFit, hw: Hardware) -> str:
    if fit.on_gpu:
        return "in unified memory" if hw.unified else "on the GPU"
    if fit.gpu_share > 0:
        return "in RAM, partly on the GPU"
    return "in RAM on the CPU"


def _speed_of(fit: ModelFit) -> float:
    return fit.tokens_per_second or 0.0


def _reason(
    family: str,
    pick: LocalModel,
    fit: ModelFit,
    hw: Hardware,
    speed: MachineSpeed,
    budget: int,
    min_speed: float,
    *,
    usable: bool,
    larger: Sequence[LocalModel],
) -> str:
    """Why ``pick``: where it fits, the speed to expect, and what the next larger tag (in
    ``larger``, largest first, all too slow) would give."""
    tokens = fit.tokens_per_second
    estimate = (
        f"~{format_speed(tokens)} tok/s estimated on {speed.device_label(fit.gpu_share)}"
        if tokens is not None
        else "speed unknown"
    )
    placement = (
        f"fits {_where(fit, hw)} (needs about {pick.memory_gb:g} GB of {format_bytes(budget)})"
    )
    if not usable:
        return (
            f"the fastest {family} tag that fits, and it will be slow: {estimate}, below the "
            f"usable {min_speed:g} tok/s; it {placement}; the hosted API answers faster"
        )
    if not larger:
        return f"largest {family} tag that {placement}; {estimate}"
    bigger = larger[-1]
    bigger_speed = format_speed(_speed_of(fit_model(bigger, hw, speed)))
    return (
        f"largest {family} tag that answers at a usable speed ({min_speed:g} tok/s or more); "
        f"it {placement}; {estimate}; {bigger.tag} would give ~{bigger_speed} tok/s"
    )


def recommend(
    catalogue: Catalogue,
    hw: Hardware,
    *,
    family: str = PREFERRED_FAMILY,
    min_speed: float = DEFAULT_MIN_SPEED,
    speed_data: SpeedData | None = None,
) -> Recommendation:
    """The largest tag of ``family`` that fits with headroom *and* answers at ``min_speed``
    tokens/s or faster (estimated), and the assumptions behind it.

    When no tag that fits is fast enough, the fastest that fits, marked ``slow``. A
    ``min_speed`` of 0 recommends by memory alone. ``speed_data`` defaults to the built-in
    numbers (`recommend_for` applies the user's overrides).
    """
    speed = machine_speed(hw, speed_data or load_speed_data())
    fits = {tag: fit_model(model, hw, speed) for tag, model in catalogue.local.items()}
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
            min_speed=min_speed,
        )
    if gpu_budget:
        label = "unified memory" if hw.unified else "VRAM"
        assumptions.append(
            f"kept {VRAM_HEADROOM:.0%} {label} headroom for the context (KV cache): "
            f"budget {format_bytes(gpu_budget)}"
        )
    if ram_budget:
        prefix = "models that do not fit the GPU run" if gpu_budget else "the model runs"
        assumptions.append(
            f"{prefix} on the CPU from RAM; kept {RAM_HEADROOM:.0%} headroom for the system: "
            f"budget {format_bytes(ram_budget)}"
        )
        if gpu_budget:
            assumptions.append(
                "Ollama puts as many of their layers on the GPU as fit, and the speed "
                "estimate counts that share at GPU speed"
            )
    assumptions.extend(speed.assumptions)
    fitting = [m for m in candidates if fits[m.tag].fits]
    if not fitting:
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
            min_speed=min_speed,
        )
    usable = [m for m in fitting if _speed_of(fits[m.tag]) >= min_speed]
    pick = usable[0] if usable else max(fitting, key=lambda m: _speed_of(fits[m.tag]))
    fit = fits[pick.tag]
    budget = gpu_budget if fit.on_gpu else ram_budget
    larger = fitting[: fitting.index(pick)]
    reason = _reason(
        family, pick, fit, hw, speed, budget, min_speed, usable=bool(usable), larger=larger
    )
    runs_on: Literal["gpu", "unified", "gpu+cpu", "cpu"] = "cpu"
    if fit.on_gpu:
        runs_on = "unified" if hw.unified else "gpu"
    elif fit.gpu_share > 0:
        runs_on = "gpu+cpu"
    return Recommendation(
        model=pick,
        runs_on=runs_on,
        budget_bytes=budget,
        reason=reason,
        assumptions=tuple(assumptions),
        fits=fits,
        tokens_per_second=fit.tokens_per_second,
        min_speed=min_speed,
        slow=not usable,
    )


def recommend_for(catalogue: Catalogue, hw: Hardware, settings: Settings) -> Recommendation:
    """`recommend` with the user's settings: the ``min_speed`` bar and any ``speed`` table
    in the ``catalogue_path`` file."""
    return recommend(
        catalogue,
        hw,
        min_speed=settings.min_speed,
        speed_data=load_speed_data(settings.catalogue_path),
    )
