"""Hardware probing (with fake system tools) and the model recommendation (pure)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import pytest

from dsollama._catalogue import Catalogue, load_catalogue
from dsollama._hardware import (
    GB,
    GIB,
    GPU,
    Hardware,
    _run,
    build_hardware,
    detect_hardware,
    fit_model,
    parse_meminfo,
    parse_nvidia_smi,
    recommend,
)

MEMINFO_16G = (
    "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
)


class FakeSystem:
    """Answers the probes like a real machine would, and records what was asked."""

    def __init__(
        self,
        files: dict[str, str] | None = None,
        commands: dict[str, str | None] | None = None,
        tools: Sequence[str] = (),
    ) -> None:
        self.files = files or {}
        self.commands = commands or {}
        self.tools = set(tools)
        self.ran: list[list[str]] = []

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def run(self, cmd: Sequence[str], timeout: float) -> str | None:
        assert timeout > 0, "every probe must have a timeout"
        self.ran.append(list(cmd))
        return self.commands.get(cmd[0])

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def detect(self, system: str, machine: str = "x86_64") -> Hardware:
        return detect_hardware(
            system=system, machine=machine, run=self.run, read=self.read, which=self.which
        )


# -- parsing -------------------------------------------------------------------------------


def test_meminfo_total_is_read_in_kibibytes() -> None:
    assert parse_meminfo(MEMINFO_16G) == 16384000 * 1024
    assert parse_meminfo("MemFree: 12 kB\n") is None


def test_nvidia_smi_lines_become_gpus_and_bad_lines_are_skipped() -> None:
    gpus = parse_nvidia_smi("24564, NVIDIA GeForce RTX 4090\n[N/A], Broken\n8192, Tesla, T4\n")
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "Tesla, T4"]
    assert gpus[0].memory_bytes == 24564 * 1024 * 1024


# -- probing ------------------------------------------------------------------------------


def test_linux_with_nvidia_gpu() -> None:
    fake = FakeSystem(
        files={"/proc/meminfo": MEMINFO_16G},
        commands={"/usr/bin/nvidia-smi": "8192, NVIDIA GeForce RTX 3070\n"},
        tools=["nvidia-smi"],
    )
    hw = fake.detect("Linux")
    assert hw.ram_bytes == 16384000 * 1024
    assert hw.vram_bytes == 8192 * 1024 * 1024
    assert not hw.unified
    assert hw.gpus[0].name == "NVIDIA GeForce RTX 3070"
    assert fake.ran == [
        [
            "/usr/bin/nvidia-smi",
            "--query-gpu=memory.total,name",
            "--format=csv,noheader,nounits",
        ]
    ]


def test_linux_without_gpu_says_it_assumes_cpu() -> None:
    hw = FakeSystem(files={"/proc/meminfo": MEMINFO_16G}).detect("Linux")
    assert hw.vram_bytes == 0
    assert hw.gpus == ()
    assert any("no NVIDIA GPU found" in n and "CPU" in n for n in hw.notes)


def test_failing_nvidia_smi_is_ignored_and_noted() -> None:
    fake = FakeSystem(
        files={"/proc/meminfo": MEMINFO_16G},
        commands={"/usr/bin/nvidia-smi": None},
        tools=["nvidia-smi"],
    )
    hw = fake.detect("Linux")
    assert hw.gpus == ()
    assert any("nvidia-smi is installed but reported no GPU" in n for n in hw.notes)


def test_container_memory_limit_wins_when_lower() -> None:
    fake = FakeSystem(
        files={"/proc/meminfo": MEMINFO_16G, "/sys/fs/cgroup/memory.max": "4294967296\n"}
    )
    hw = fake.detect("Linux")
    assert hw.ram_bytes == 4 * GIB
    assert any("container memory limit" in n for n in hw.notes)


def test_unlimited_cgroup_keeps_the_machine_ram() -> None:
    fake = FakeSystem(files={"/proc/meminfo": MEMINFO_16G, "/sys/fs/cgroup/memory.max": "max\n"})
    assert fake.detect("Linux").ram_bytes == 16384000 * 1024


def test_apple_silicon_is_unified_memory_and_never_runs_nvidia_smi() -> None:
    fake = FakeSystem(commands={"sysctl": str(32 * GIB) + "\n"}, tools=["nvidia-smi"])
    hw = fake.detect("Darwin", "arm64")
    assert hw.unified
    assert hw.ram_bytes == 32 * GIB
    assert hw.vram_bytes == int(32 * GIB * 2 / 3)
    assert any("unified memory" in n for n in hw.notes)
    assert fake.ran == [["sysctl", "-n", "hw.memsize"]]


def test_intel_mac_runs_on_cpu() -> None:
    hw = FakeSystem(commands={"sysctl": str(16 * GIB)}).detect("Darwin", "x86_64")
    assert not hw.unified
    assert hw.vram_bytes == 0
    assert any("Intel Mac" in n for n in hw.notes)


def test_unreadable_ram_is_noted_not_raised() -> None:
    hw = FakeSystem().detect("Linux")
    assert hw.ram_bytes is None
    assert any("could not read the total RAM" in n for n in hw.notes)


def test_command_runner_reports_failure_as_none() -> None:
    assert _run(["dsollama-no-such-command-xyz"], 1.0) is None
    assert _run([sys.executable, "-c", "raise SystemExit(3)"], 10.0) is None
    assert _run([sys.executable, "-c", "print('ok')"], 10.0) == "ok\n"


def test_detect_hardware_on_this_machine_never_raises() -> None:
    hw = detect_hardware()
    assert hw.ram_bytes is None or hw.ram_bytes > 0


# -- recommendation ------------------------------------------------------------------------


@pytest.fixture
def catalogue() -> Catalogue:
    return load_catalogue()


def cpu_only(ram_gib: float) -> Hardware:
    return build_hardware(system="Linux", machine="x86_64", ram_bytes=int(ram_gib * GIB))


def nvidia(vram_gib: float, ram_gib: float = 32) -> Hardware:
    gpu = GPU("Fake GPU", int(vram_gib * GIB))
    return build_hardware(
        system="Linux", machine="x86_64", ram_bytes=int(ram_gib * GIB), gpus=[gpu]
    )


def apple(ram_gib: float) -> Hardware:
    return build_hardware(system="Darwin", machine="arm64", ram_bytes=int(ram_gib * GIB))


@pytest.mark.parametrize(
    ("hardware", "tag", "runs_on"),
    [
        (nvidia(24), "deepseek-r1:32b", "gpu"),  # 23 GB fits 90 % of 24 GiB
        (nvidia(8), "deepseek-r1:8b", "gpu"),
        (nvidia(12), "deepseek-r1:14b", "gpu"),  # 11 GB fits 90 % of 12 GiB
        (nvidia(10), "deepseek-r1:8b", "gpu"),  # 14b needs 11 GB > 9.7 GB
        (apple(16), "deepseek-r1:8b", "unified"),
        (apple(64), "deepseek-r1:32b", "unified"),
        (apple(128), "deepseek-r1:70b", "unified"),
        (cpu_only(16), "deepseek-r1:14b", "cpu"),
        (cpu_only(8), "deepseek-r1:7b", "cpu"),  # 8b needs 6.5 GB > 75 % of 8 GiB
    ],
)
def test_largest_r1_tag_that_fits_with_headroom(
    catalogue: Catalogue, hardware: Hardware, tag: str, runs_on: str
) -> None:
    rec = recommend(catalogue, hardware)
    assert rec.tag == tag
    assert rec.runs_on == runs_on
    assert rec.model is not None
    assert rec.model.memory_gb * GB <= rec.budget_bytes


def test_cpu_only_says_what_it_assumed(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, cpu_only(16))
    text = " | ".join(rec.assumptions)
    assert "no NVIDIA GPU found" in text
    assert "runs on the CPU from RAM; kept 25% headroom" in text


def test_big_cpu_machine_is_capped_at_a_usable_size(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, cpu_only(256))
    assert rec.tag == "deepseek-r1:14b"
    assert rec.fits["deepseek-r1:70b"].on_cpu  # it fits; it is just too slow to recommend
    assert any("too slowly to recommend" in a for a in rec.assumptions)


def test_small_gpu_falls_back_to_cpu_and_says_so(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, nvidia(1, ram_gib=16))
    assert rec.runs_on == "cpu"
    assert rec.tag == "deepseek-r1:14b"
    assert any(a.startswith("no model fits the GPU") for a in rec.assumptions)


def test_nothing_fits_points_to_hosted(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, cpu_only(2))
    assert rec.model is None
    assert rec.tag is None
    assert "hosted" in rec.reason


def test_unknown_memory_recommends_the_default_tag(catalogue: Catalogue) -> None:
    hw = build_hardware(system="Linux", machine="x86_64", ram_bytes=None)
    rec = recommend(catalogue, hw)
    assert rec.tag == "deepseek-r1:8b"
    assert any("memory unknown" in a for a in rec.assumptions)


def test_fits_cover_every_catalogue_tag(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, nvidia(8, ram_gib=32))
    assert set(rec.fits) == set(catalogue.local)
    assert rec.fits["deepseek-coder:6.7b"].where == "gpu"
    assert rec.fits["deepseek-r1:32b"].where == "cpu"
    assert rec.fits["deepseek-r1:671b"].where == ""
    assert not fit_model(catalogue.local["deepseek-v3:671b"], cpu_only(64)).fits
