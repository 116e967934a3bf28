"""What the machine is, as far as placing and running a model is concerned (data only).

Filled in by `_hardware` (detection) and read by `_speed` (estimates) and the
recommendation; a module of its own so neither has to import the other's logic.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "Hardware"]


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
    cpu_cores: int | None = None
    "Cores a model can use: physical cores, within the CPU affinity and any container quota."
    cpu_name: str = ""
    "The CPU's model name (on Apple silicon the chip: 'Apple M2 Pro')."
    memory_type: str | None = None
    "'DDR4', 'DDR5', 'LPDDR5'… when the SMBIOS table could be read."
    memory_mts: int | None = None
    "Memory transfer rate (MT/s) of the slowest module, when it could be read."
    memory_modules: int | None = None
    "Memory modules installed, when it could be read."
