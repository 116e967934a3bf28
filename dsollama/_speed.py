"""Answer-speed estimates: about how many tokens a second a model would decode on a machine.

Decoding one token reads every weight the token passes through once, so on each device
Ollama runs models on, decoding is bound by memory bandwidth::

    tokens/s ≈ effective bandwidth / bytes read per token

*Bytes read per token* is the model's download size (its weights at their quantisation),
scaled down for mixture-of-experts models to the share of parameters a token is routed to.
*Effective bandwidth* is a peak figure times the share of it decoding reaches:

- an NVIDIA GPU: its memory bandwidth from a table of known cards, matched on the name
  nvidia-smi reports, else a conservative entry-level figure;
- Apple silicon: the chip's unified-memory bandwidth, likewise;
- the CPU: the smaller of what the memory delivers (channels × 8 bytes × transfer rate)
  and what the cores consume (cores × the weights one core dequantises per second);
- a model that fits RAM but not VRAM: Ollama puts as many layers as fit on the GPU and
  runs the rest on the CPU, one after the other, so the two times add up.

These are estimates, not measurements. The numbers live in ``data/speed.json`` (a ``speed``
table in the ``catalogue_path`` file overrides them) and every assumption made for a machine
is returned in words. Long contexts (the KV cache is read per token too), prompt processing
and other programs make real answers slower. Nothing here does I/O but reading the data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ._exceptions import ConfigError

if TYPE_CHECKING:
    from ._catalogue import LocalModel
    from ._machine import Hardware

__all__ = [
    "DEFAULT_MIN_SPEED",
    "Device",
    "MachineSpeed",
    "SpeedData",
    "format_speed",
    "load_speed_data",
    "machine_speed",
    "match_name",
    "parse_billions",
]

GB = 1_000_000_000
# Below about 8 tokens a second an answer comes slower than people read, and R1 models
# think at length before they answer: the default bar for a recommendation.
DEFAULT_MIN_SPEED = 8.0
BYTES_PER_TRANSFER = 8
"A DDR channel (or an LPDDR pair of the same width) moves 64 bits per transfer."


@dataclass(frozen=True)
class SpeedData:
    """The numbers behind the estimates (``data/speed.json``); all bandwidths in GB/s."""

    gpu_efficiency: float
    unified_efficiency: float
    cpu_efficiency: float
    gpus: Mapping[str, float]
    "Peak bandwidth by NVIDIA card name."
    unknown_gpu_gbps: float
    apple_chips: Mapping[str, float]
    "Peak unified-memory bandwidth by Apple chip ('M2 Pro')."
    unknown_apple_gbps: float
    per_core_gbps: float
    "Q4 weights one CPU core dequantises and multiplies per second."
    unknown_cores: int
    memory_channels: int
    default_memory: str
    memory_mts: Mapping[str, int]
    "Typical transfer rate by memory type, for when only the type is known."
    active_parameters_b: Mapping[str, float]
    "Billions of parameters active per token, for mixture-of-experts tags."

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> SpeedData:
        """Build from the JSON shape; a missing or non-positive number is a `ConfigError`."""
        try:
            eff, gpu, apple, cpu = raw["efficiency"], raw["gpu"], raw["apple"], raw["cpu"]
            data = cls(
                gpu_efficiency=_share(eff["gpu"], "efficiency.gpu"),
                unified_efficiency=_share(eff["unified"], "efficiency.unified"),
                cpu_efficiency=_share(eff["cpu"], "efficiency.cpu"),
                gpus=_table(gpu["bandwidth_gbps"], "gpu.bandwidth_gbps"),
                unknown_gpu_gbps=_positive(gpu["unknown_gbps"], "gpu.unknown_gbps"),
                apple_chips=_table(apple["bandwidth_gbps"], "apple.bandwidth_gbps"),
                unknown_apple_gbps=_positive(apple["unknown_gbps"], "apple.unknown_gbps"),
                per_core_gbps=_positive(cpu["per_core_gbps"], "cpu.per_core_gbps"),
                unknown_cores=int(_positive(cpu["unknown_cores"], "cpu.unknown_cores")),
                memory_channels=int(_positive(cpu["memory_channels"], "cpu.memory_channels")),
                default_memory=str(cpu["default_memory"]).upper(),
                memory_mts={
                    k.upper(): int(v)
                    for k, v in _table(cpu["memory_mts"], "cpu.memory_mts").items()
                },
                active_parameters_b=_table(
                    raw.get("active_parameters_b", {}), "active_parameters_b"
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"speed data is malformed: missing or wrong {exc}",
                hint="compare the 'speed' table in the catalogue_path file with data/speed.json",
            ) from None
        if data.default_memory not in data.memory_mts:
            raise ConfigError(
                f"speed data: default_memory {data.default_memory!r} is not in memory_mts",
                hint="name one of " + ", ".join(sorted(data.memory_mts)),
            )
        return data


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(
            f"speed data: {where} must be a positive number, not {value!r}",
            hint="fix the 'speed' table in the catalogue_path file",
        )
    return float(value)


def _share(value: Any, where: str) -> float:
    share = _positive(value, where)
    if share > 1:
        raise ConfigError(
            f"speed data: {where} is a share of peak bandwidth, at most 1, not {value!r}",
            hint="fix the 'speed' table in the catalogue_path file",
        )
    return share


def _table(raw: Mapping[str, Any], where: str) -> dict[str, float]:
    return {
        str(k): _positive(v, f"{where}[{k!r}]") for k, v in raw.items() if not k.startswith("_")
    }


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, tables merged key by key (so one card can be added)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@lru_cache(maxsize=8)
def load_speed_data(override_path: str | None = None) -> SpeedData:
    """The built-in numbers, with the ``speed`` table of ``override_path`` merged over them.

    ``override_path`` is the ``catalogue_path`` setting: one file extends both the
    catalogue and the speed table.
    """
    text = resources.files("dsollama").joinpath("data/speed.json").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    if override_path:
        from ._catalogue import read_override  # one reader for the one user file

        extra = read_override(override_path).get("speed", {})
        if not isinstance(extra, Mapping):
            raise ConfigError(
                f"catalogue file {override_path}: 'speed' must be a table like data/speed.json"
            )
        raw = _merge(raw, extra)
    return SpeedData.from_mapping(raw)


# -- pure helpers --------------------------------------------------------------------------


def match_name(name: str, table: Mapping[str, float]) -> tuple[str, float] | None:
    """The longest key of ``table`` found in ``name`` as whole words, ignoring case.

    >>> match_name("NVIDIA GeForce RTX 4080 SUPER", {"RTX 4080": 717, "RTX 4080 SUPER": 736})
    ('RTX 4080 SUPER', 736)
    >>> match_name("NVIDIA A100-SXM4-40GB", {"A10": 600, "A100": 1555})
    ('A100', 1555)
    >>> match_name("NVIDIA L40S", {"L4": 300}) is None
    True
    """
    lowered = name.lower()
    for key in sorted(table, key=len, reverse=True):
        if re.search(rf"(?<![a-z0-9]){re.escape(key.lower())}(?![a-z0-9])", lowered):
            return key, table[key]
    return None


def parse_billions(parameters: str) -> float | None:
    """Billions of parameters from the catalogue's ``parameters`` text.

    >>> parse_billions("15.7B"), parse_billions("671B"), parse_billions("?")
    (15.7, 671.0, None)
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*[bB]\s*", parameters)
    return float(match.group(1)) if match else None


def format_speed(tokens_per_second: float) -> str:
    """Whole numbers from 10 up, one decimal below, so small speeds do not read as zero.

    >>> format_speed(23.08), format_speed(2.61), format_speed(0.04)
    ('23', '2.6', '0.0')
    """
    return f"{tokens_per_second:.0f}" if tokens_per_second >= 10 else f"{tokens_per_second:.1f}"


def _gbps(value: float) -> str:
    return f"{value:.0f} GB/s" if value >= 10 else f"{value:.1f} GB/s"


# -- this machine ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """Something that reads the weights: a GPU (or several), Apple unified memory, the CPU."""

    label: str
    "How to name it in a sentence: 'NVIDIA GeForce RTX 4090', '2 CPU cores'."
    gbps: float
    "Effective bandwidth in GB/s (peak × the share decoding reaches)."


@dataclass(frozen=True)
class MachineSpeed:
    """The estimated decode speed of one machine, for any model."""

    accelerator: Device | None
    cpu: Device
    assumptions: tuple[str, ...]
    "What the estimate assumed, in words a person can check."
    active_parameters_b: Mapping[str, float]

    def bytes_per_token(self, model: LocalModel) -> float:
        """Weight bytes one decoded token reads: all of them, or the active experts' share."""
        active = self.active_parameters_b.get(model.tag)
        total = parse_billions(model.parameters)
        if active and total and active < total:
            return model.size_bytes * active / total
        return float(model.size_bytes)

    def tokens_per_second(self, model: LocalModel, gpu_share: float) -> float | None:
        """Estimated decode speed with ``gpu_share`` of the model on the accelerator.

        None when the catalogue does not know the model's size.
        """
        read = self.bytes_per_token(model)
        if read <= 0:
            return None
        share = min(max(gpu_share, 0.0), 1.0) if self.accelerator else 0.0
        seconds = read * (1 - share) / (self.cpu.gbps * GB)
        if self.accelerator is not None and share:
            seconds += read * share / (self.accelerator.gbps * GB)
        return 1 / seconds

    def device_label(self, gpu_share: float) -> str:
        """Where a model with ``gpu_share`` on the accelerator runs, for a sentence."""
        if self.accelerator is None or gpu_share <= 0:
            return self.cpu.label
        if gpu_share >= 1:
            return self.accelerator.label
        return f"{self.accelerator.label} and {self.cpu.label}"


def _accelerator(hw: Hardware, data: SpeedData, notes: list[str]) -> Device | None:
    if hw.unified:
        hit = match_name(hw.cpu_name, data.apple_chips) if hw.cpu_name else None
        if hit:
            label, peak = f"Apple {hit[0]}", hit[1]
            notes.append(f"{label}: {peak:g} GB/s unified memory (spec sheet)")
        else:
            label, peak = "Apple silicon", data.unknown_apple_gbps
            chip = f"chip {hw.cpu_name!r} is" if hw.cpu_name else "chip could not be read, so it is"
            notes.append(
                f"Apple {chip} not in the speed table: assumed {peak:g} GB/s, "
                "a base M-series chip (add it under speed.apple in the catalogue file)"
            )
        effective = peak * data.unified_efficiency
        notes.append(
            f"speed estimate: decoding reaches about {data.unified_efficiency:.0%} of that, "
            f"{_gbps(effective)}"
        )
        return Device(label, effective)
    if not hw.gpus:
        return None
    peaks: list[float] = []
    for gpu in hw.gpus:
        hit = match_name(gpu.name, data.gpus)
        if hit:
            peaks.append(hit[1])
        else:
            peaks.append(data.unknown_gpu_gbps)
            notes.append(
                f"GPU {gpu.name!r} is not in the speed table: assumed {data.unknown_gpu_gbps:g} "
                "GB/s, an entry-level card (add it under speed.gpu in the catalogue file)"
            )
    names = {g.name for g in hw.gpus}
    label = hw.gpus[0].name if len(hw.gpus) == 1 else " + ".join(g.name for g in hw.gpus)
    if len(hw.gpus) > 1 and len(names) == 1:
        label = f"{len(hw.gpus)}× {hw.gpus[0].name}"
    # Layers split over GPUs run one after another: the slowest card bounds the estimate.
    peak = min(peaks)
    effective = peak * data.gpu_efficiency
    notes.append(
        f"speed estimate: {label} at {peak:g} GB/s peak, about {data.gpu_efficiency:.0%} of it "
        f"reached while decoding: {_gbps(effective)}"
    )
    return Device(label, effective)


def _cpu(hw: Hardware, data: SpeedData, notes: list[str], *, say: bool) -> Device:
    cores = hw.cpu_cores or data.unknown_cores
    memory = (hw.memory_type or "").upper()
    if memory not in data.memory_mts:
        memory = ""
    mts = hw.memory_mts or data.memory_mts[memory or data.default_memory]
    channels = data.memory_channels
    if hw.memory_modules:
        # One module can fill one channel only; more modules than channels add no bandwidth.
        channels = min(channels, hw.memory_modules)
    peak = channels * BYTES_PER_TRANSFER * mts / 1000
    memory_bound = peak * data.cpu_efficiency
    compute_bound = cores * data.per_core_gbps
    effective = min(memory_bound, compute_bound)
    plural = "s" if cores != 1 else ""
    if say:
        if not hw.cpu_cores:
            notes.append(f"CPU core count unknown: assumed {cores}")
        described = f"{memory or data.default_memory}-{mts}"
        if not memory and not hw.memory_mts:
            notes.append(
                "memory type and speed could not be read (on Linux that needs root): assumed "
                f"{data.memory_channels}-channel {described}"
            )
        bound = "the cores" if compute_bound <= memory_bound else "the memory"
        notes.append(
            f"speed estimate on the CPU: {cores} core{plural} × {data.per_core_gbps:g} GB/s = "
            f"{_gbps(compute_bound)}; {channels}-channel {described} memory = {peak:.0f} GB/s "
            f"peak, about {data.cpu_efficiency:.0%} reached = {_gbps(memory_bound)}; "
            f"{bound} set the pace at {_gbps(effective)}"
        )
    return Device(f"{cores} CPU core{plural}", effective)


def machine_speed(hw: Hardware, data: SpeedData) -> MachineSpeed:
    """Effective bandwidths of ``hw``'s devices, and the assumptions behind them."""
    notes: list[str] = []
    accelerator = _accelerator(hw, data, notes)
    # On Apple silicon every model that fits runs in unified memory: CPU figures are noise.
    cpu = _cpu(hw, data, notes, say=not hw.unified)
    return MachineSpeed(accelerator, cpu, tuple(notes), data.active_parameters_b)
