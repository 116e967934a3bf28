"""Hardware probing (with fake system tools), speed estimates and the recommendation (pure)."""

from __future__ import annotations

import doctest
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from dsollama import _hardware, _speed
from dsollama._catalogue import Catalogue, load_catalogue
from dsollama._config import load_settings
from dsollama._exceptions import ConfigError
from dsollama._hardware import (
    GB,
    GIB,
    GPU,
    SMBIOS_TABLE,
    Hardware,
    _run,
    build_hardware,
    detect_hardware,
    fit_model,
    parse_cgroup_cpus,
    parse_cpuinfo,
    parse_meminfo,
    parse_nvidia_smi,
    parse_smbios_memory,
    recommend,
    recommend_for,
)
from dsollama._speed import SpeedData, load_speed_data, machine_speed, match_name

MEMINFO_16G = (
    "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n"
)


def cpuinfo(sockets: int, cores: int, threads: int, name: str = "AMD Ryzen 7 7700X") -> str:
    """/proc/cpuinfo text: one block per hardware thread, as Linux writes it on x86."""
    blocks = []
    n = 0
    for socket in range(sockets):
        for core in range(cores):
            for _ in range(threads):
                blocks.append(
                    f"processor\t: {n}\nvendor_id\t: AuthenticAMD\nmodel name\t: {name}\n"
                    f"physical id\t: {socket}\nsiblings\t: {cores * threads}\n"
                    f"core id\t\t: {core}\ncpu cores\t: {cores}\nflags\t\t: fpu avx2\n"
                )
                n += 1
    return "\n".join(blocks)


def dimm(size_mb: int, kind: int, speed: int, configured: int, strings: bytes = b"") -> bytes:
    """One SMBIOS type-17 structure (length 0x22), laid out as the DMTF spec says."""
    body = bytearray(0x22)
    body[0], body[1] = 17, 0x22
    body[0x0C:0x0E] = size_mb.to_bytes(2, "little")
    body[0x12] = kind
    body[0x15:0x17] = speed.to_bytes(2, "little")
    body[0x20:0x22] = configured.to_bytes(2, "little")
    return bytes(body) + (strings + b"\0" if strings else b"\0") + b"\0"


BIOS = bytes([0, 0x18]) + bytes(0x16) + b"American Megatrends\0" + b"\0"
END = bytes([127, 4, 0, 0]) + b"\0\0"


class FakeSystem:
    """Answers the probes like a real machine would, and records what was asked."""

    def __init__(
        self,
        files: dict[str, str] | None = None,
        commands: dict[str, str | None] | None = None,
        tools: Sequence[str] = (),
        binary: dict[str, bytes] | None = None,
        cpus: int | None = None,
    ) -> None:
        self.files = files or {}
        self.commands = commands or {}
        self.tools = set(tools)
        self.binary = binary or {}
        self.cpus = cpus
        self.ran: list[list[str]] = []

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def read_bytes(self, path: str) -> bytes | None:
        return self.binary.get(path)

    def run(self, cmd: Sequence[str], timeout: float) -> str | None:
        assert timeout > 0, "every probe must have a timeout"
        self.ran.append(list(cmd))
        # A whole command line answers before its program name does (sysctl asks many things).
        full = " ".join(cmd)
        return self.commands[full] if full in self.commands else self.commands.get(cmd[0])

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def detect(self, system: str, machine: str = "x86_64") -> Hardware:
        return detect_hardware(
            system=system,
            machine=machine,
            run=self.run,
            read=self.read,
            which=self.which,
            read_bytes=self.read_bytes,
            cpu_count=lambda: self.cpus,
        )


# -- parsing -------------------------------------------------------------------------------


def test_meminfo_total_is_read_in_kibibytes() -> None:
    assert parse_meminfo(MEMINFO_16G) == 16384000 * 1024
    assert parse_meminfo("MemFree: 12 kB\n") is None


def test_nvidia_smi_lines_become_gpus_and_bad_lines_are_skipped() -> None:
    gpus = parse_nvidia_smi("24564, NVIDIA GeForce RTX 4090\n[N/A], Broken\n8192, Tesla, T4\n")
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "Tesla, T4"]
    assert gpus[0].memory_bytes == 24564 * 1024 * 1024


def test_cpuinfo_counts_physical_cores_not_hyper_threads() -> None:
    assert parse_cpuinfo(cpuinfo(1, 8, 2)) == ("AMD Ryzen 7 7700X", 8)
    assert parse_cpuinfo(cpuinfo(2, 4, 2, "Intel Xeon"))[1] == 8  # core ids repeat per socket
    arm = "processor\t: 0\nBogoMIPS\t: 108\n\nprocessor\t: 1\nBogoMIPS\t: 108\n"
    assert parse_cpuinfo(arm) == ("", 2)
    assert parse_cpuinfo("") == ("", None)


def test_cgroup_cpu_quota() -> None:
    assert parse_cgroup_cpus("150000 100000\n") == 1.5
    assert parse_cgroup_cpus("max 100000\n") is None
    assert parse_cgroup_cpus("garbage") is None


def test_smbios_memory_type_speed_and_modules() -> None:
    table = (
        BIOS
        + dimm(16384, 0x22, 5600, 4800, b"DIMM_A1\0Samsung")
        + dimm(0, 0x02, 0, 0, b"DIMM_A2")  # empty slot: not a module
        + dimm(16384, 0x22, 5600, 5200, b"DIMM_B1")
        + END
    )
    # The slowest module's configured speed is what the memory really runs at.
    assert parse_smbios_memory(table) == ("DDR5", 4800, 2)


def test_smbios_without_configured_speed_uses_the_rated_one() -> None:
    assert parse_smbios_memory(dimm(8192, 0x1A, 3200, 0) + END) == ("DDR4", 3200, 1)


@pytest.mark.parametrize("cut", [1, 5, 30])
def test_truncated_smbios_table_is_not_an_error(cut: int) -> None:
    table = dimm(8192, 0x1A, 3200, 3200, b"DIMM") + END
    assert parse_smbios_memory(table[:cut]) == (None, None, None)
    # Cut inside the strings: the structure itself was whole, so it still counts.
    assert parse_smbios_memory(table[: 0x22 + 2]) == ("DDR4", 3200, 1)


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
    fake = FakeSystem(
        commands={
            "sysctl -n hw.memsize": str(32 * GIB) + "\n",
            "sysctl -n machdep.cpu.brand_string": "Apple M2 Pro\n",
            "sysctl -n hw.physicalcpu": "10\n",
        },
        tools=["nvidia-smi"],
        cpus=10,
    )
    hw = fake.detect("Darwin", "arm64")
    assert hw.unified
    assert hw.ram_bytes == 32 * GIB
    assert hw.vram_bytes == int(32 * GIB * 2 / 3)
    assert hw.cpu_name == "Apple M2 Pro"
    assert hw.cpu_cores == 10
    assert any("unified memory" in n for n in hw.notes)
    assert all(cmd[0] == "sysctl" for cmd in fake.ran)


def test_linux_cores_are_physical_within_affinity_and_container_quota() -> None:
    files = {"/proc/meminfo": MEMINFO_16G, "/proc/cpuinfo": cpuinfo(1, 8, 2)}
    assert FakeSystem(files=files, cpus=16).detect("Linux").cpu_cores == 8
    assert FakeSystem(files=files, cpus=3).detect("Linux").cpu_cores == 3  # taskset
    quota = {**files, "/sys/fs/cgroup/cpu.max": "200000 100000\n"}
    hw = FakeSystem(files=quota, cpus=16).detect("Linux")
    assert hw.cpu_cores == 2
    assert hw.cpu_name == "AMD Ryzen 7 7700X"
    assert any("container CPU quota of 2 CPUs" in n for n in hw.notes)


def test_linux_memory_type_comes_from_smbios_when_readable() -> None:
    table = BIOS + dimm(16384, 0x22, 5600, 5600) + dimm(16384, 0x22, 5600, 5600) + END
    fake = FakeSystem(files={"/proc/meminfo": MEMINFO_16G}, binary={SMBIOS_TABLE: table})
    hw = fake.detect("Linux")
    assert (hw.memory_type, hw.memory_mts, hw.memory_modules) == ("DDR5", 5600, 2)
    unreadable = FakeSystem(files={"/proc/meminfo": MEMINFO_16G}).detect("Linux")
    assert unreadable.memory_type is None


def test_intel_mac_runs_on_cpu() -> None:
    hw = FakeSystem(commands={"sysctl -n hw.memsize": str(16 * GIB)}).detect("Darwin", "x86_64")
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
    assert hw.cpu_cores is None or hw.cpu_cores >= 1


# -- recommendation ------------------------------------------------------------------------


@pytest.fixture
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def data() -> SpeedData:
    return load_speed_data()


def cpu_only(
    ram_gib: float,
    cores: int | None = None,
    memory_type: str | None = None,
    modules: int | None = None,
) -> Hardware:
    return build_hardware(
        system="Linux",
        machine="x86_64",
        ram_bytes=int(ram_gib * GIB),
        cpu_cores=cores,
        memory_type=memory_type,
        memory_modules=modules,
    )


def nvidia(
    vram_gib: float, ram_gib: float = 32, name: str = "Fake GPU", cores: int | None = None
) -> Hardware:
    gpu = GPU(name, int(vram_gib * GIB))
    return build_hardware(
        system="Linux", machine="x86_64", ram_bytes=int(ram_gib * GIB), gpus=[gpu], cpu_cores=cores
    )


def apple(ram_gib: float, chip: str = "") -> Hardware:
    return build_hardware(
        system="Darwin", machine="arm64", ram_bytes=int(ram_gib * GIB), cpu_name=chip
    )


@pytest.mark.parametrize(
    ("hardware", "tag", "runs_on"),
    [
        (nvidia(24, name="NVIDIA GeForce RTX 4090"), "deepseek-r1:32b", "gpu"),
        (nvidia(8, name="NVIDIA GeForce RTX 4060"), "deepseek-r1:8b", "gpu"),
        (nvidia(12, name="NVIDIA GeForce RTX 3060"), "deepseek-r1:14b", "gpu"),
        # 14b needs 11 GB of a 9.7 GB budget: most layers on a fast card, the rest on the CPU.
        (nvidia(10, name="NVIDIA GeForce RTX 3080"), "deepseek-r1:14b", "gpu+cpu"),
        (apple(16, "Apple M1"), "deepseek-r1:8b", "unified"),
        (apple(64, "Apple M2 Max"), "deepseek-r1:32b", "unified"),
        (apple(128, "Apple M2 Ultra"), "deepseek-r1:70b", "unified"),
        (cpu_only(24, cores=2), "deepseek-r1:1.5b", "cpu"),
        (cpu_only(32, cores=8, memory_type="DDR5"), "deepseek-r1:8b", "cpu"),
        (cpu_only(32, cores=8), "deepseek-r1:1.5b", "cpu"),  # DDR4 assumed: 7b is just short
    ],
)
def test_largest_r1_tag_that_fits_and_answers_at_a_usable_speed(
    catalogue: Catalogue, hardware: Hardware, tag: str, runs_on: str
) -> None:
    rec = recommend(catalogue, hardware)
    assert rec.tag == tag
    assert rec.runs_on == runs_on
    assert rec.model is not None
    assert rec.model.memory_gb * GB <= rec.budget_bytes
    assert not rec.slow
    assert rec.tokens_per_second is not None
    assert rec.tokens_per_second >= rec.min_speed == 8
    bigger = [
        m
        for m in catalogue.local.values()
        if m.library == "deepseek-r1" and m.memory_gb > rec.model.memory_gb
    ]
    for model in bigger:  # every larger tag either does not fit or is too slow
        fit = rec.fits[model.tag]
        assert not fit.fits or (fit.tokens_per_second or 0) < 8


def test_two_cpu_cores_no_longer_get_the_14b_model(catalogue: Catalogue, data: SpeedData) -> None:
    rec = recommend(catalogue, cpu_only(24, cores=2))
    assert rec.tag != "deepseek-r1:14b"
    # It still fits; it would answer at about a token a second, as the issue said.
    r14 = rec.fits["deepseek-r1:14b"]
    assert r14.on_cpu
    assert r14.tokens_per_second is not None
    assert r14.tokens_per_second < 2
    # Two cores bound the speed: 2 × the per-core rate over the 1.5b model's weights.
    expected = 2 * data.per_core_gbps * GB / catalogue.local["deepseek-r1:1.5b"].size_bytes
    assert rec.tokens_per_second == pytest.approx(expected)
    r7b = rec.fits["deepseek-r1:7b"].tokens_per_second
    assert r7b is not None
    assert (
        f"~{_speed.format_speed(expected)} tok/s estimated on 2 CPU cores; "
        f"deepseek-r1:7b would give ~{_speed.format_speed(r7b)} tok/s" in rec.reason
    )
    assert "fits in RAM on the CPU (needs about 2 GB of 19.3 GB)" in rec.reason


def test_min_speed_moves_the_bar(catalogue: Catalogue) -> None:
    two_cores = cpu_only(24, cores=2)
    assert recommend(catalogue, two_cores, min_speed=2).tag == "deepseek-r1:8b"
    # 0 is the old rule: the largest that fits, however slow.
    by_memory = recommend(catalogue, two_cores, min_speed=0)
    assert by_memory.tag == "deepseek-r1:14b"
    assert by_memory.reason.startswith("largest deepseek-r1 tag that fits in RAM on the CPU")
    assert not by_memory.slow


def test_when_nothing_is_fast_enough_the_fastest_is_recommended_and_called_slow(
    catalogue: Catalogue,
) -> None:
    rec = recommend(catalogue, cpu_only(24, cores=2), min_speed=100)
    assert rec.tag == "deepseek-r1:1.5b"
    assert rec.slow
    assert "will be slow: ~11 tok/s estimated on 2 CPU cores, below the usable 100 tok/s" in (
        rec.reason
    )
    assert "hosted API" in rec.reason
    tiny = recommend(catalogue, cpu_only(4, cores=1))
    assert tiny.tag == "deepseek-r1:1.5b"
    assert tiny.slow
    assert tiny.tokens_per_second is not None
    assert tiny.tokens_per_second < 8


def test_known_gpu_answers_fast_from_vram(catalogue: Catalogue, data: SpeedData) -> None:
    # 64 GiB of RAM: 70b fits too, mostly on the CPU, far too slowly.
    rec = recommend(catalogue, nvidia(24, ram_gib=64, name="NVIDIA GeForce RTX 4090"))
    assert rec.tag == "deepseek-r1:32b"
    assert rec.fits["deepseek-r1:70b"].on_cpu
    expected = 1008 * data.gpu_efficiency * GB / catalogue.local["deepseek-r1:32b"].size_bytes
    assert rec.tokens_per_second == pytest.approx(expected)
    assert rec.reason.startswith("largest deepseek-r1 tag that answers at a usable speed")
    assert "estimated on NVIDIA GeForce RTX 4090; deepseek-r1:70b would give" in rec.reason
    assert any("at 1008 GB/s peak" in a for a in rec.assumptions)


def test_unknown_gpu_is_assumed_to_be_slow(catalogue: Catalogue, data: SpeedData) -> None:
    known = recommend(catalogue, nvidia(24, name="NVIDIA GeForce RTX 4090"))
    unknown = recommend(catalogue, nvidia(24, name="Mystery Accelerator 9000"))
    # 32b fits either card; on an unknown one the estimate is too low to recommend it.
    assert unknown.fits["deepseek-r1:32b"].on_gpu
    assert unknown.tag == "deepseek-r1:14b"
    r32 = unknown.fits["deepseek-r1:32b"].tokens_per_second
    assert r32 is not None
    assert r32 < 8 < (known.fits["deepseek-r1:32b"].tokens_per_second or 0)
    assert any(
        f"'Mystery Accelerator 9000' is not in the speed table: assumed "
        f"{data.unknown_gpu_gbps:g} GB/s" in a
        for a in unknown.assumptions
    )


def test_laptop_gpus_are_not_mistaken_for_desktop_cards(data: SpeedData) -> None:
    laptop = match_name("NVIDIA GeForce RTX 4090 Laptop GPU", data.gpus)
    desktop = match_name("NVIDIA GeForce RTX 4090", data.gpus)
    assert laptop is not None
    assert desktop is not None
    assert laptop[1] < desktop[1]


def test_several_gpus_go_at_the_slowest_cards_pace(data: SpeedData) -> None:
    mixed = build_hardware(
        system="Linux",
        machine="x86_64",
        ram_bytes=64 * GIB,
        gpus=[GPU("NVIDIA GeForce RTX 4090", 24 * GIB), GPU("NVIDIA GeForce RTX 3060", 12 * GIB)],
    )
    speed = machine_speed(mixed, data)
    assert speed.accelerator is not None
    assert speed.accelerator.gbps == pytest.approx(360 * data.gpu_efficiency)
    twins = build_hardware(
        system="Linux",
        machine="x86_64",
        ram_bytes=64 * GIB,
        gpus=[GPU("NVIDIA GeForce RTX 3090", 24 * GIB)] * 2,
    )
    twin_speed = machine_speed(twins, data).accelerator
    assert twin_speed is not None
    assert twin_speed.label == "2× NVIDIA GeForce RTX 3090"


def test_apple_chip_sets_the_unified_memory_speed(catalogue: Catalogue, data: SpeedData) -> None:
    m1 = recommend(catalogue, apple(16, "Apple M1")).fits["deepseek-r1:8b"].tokens_per_second
    m2 = recommend(catalogue, apple(16, "Apple M2")).fits["deepseek-r1:8b"].tokens_per_second
    assert m1 is not None
    assert m2 is not None
    assert m2 / m1 == pytest.approx(data.apple_chips["M2"] / data.apple_chips["M1"])
    unknown = recommend(catalogue, apple(32))
    assert any("could not be read" in a and "base M-series" in a for a in unknown.assumptions)
    assert unknown.fits["deepseek-r1:8b"].tokens_per_second == pytest.approx(
        data.unknown_apple_gbps * data.unified_efficiency * GB / 5_200_000_000
    )
    # Unified memory: no CPU figures to confuse anyone.
    assert not any("speed estimate on the CPU" in a for a in unknown.assumptions)


def test_cpu_speed_is_bound_by_cores_or_by_memory(data: SpeedData) -> None:
    few = machine_speed(cpu_only(32, cores=2), data)
    assert few.cpu.gbps == pytest.approx(2 * data.per_core_gbps)
    assert any("the cores set the pace" in a for a in few.assumptions)
    many = machine_speed(cpu_only(32, cores=32), data)
    dual_ddr4 = 2 * 8 * data.memory_mts["DDR4"] / 1000 * data.cpu_efficiency
    assert many.cpu.gbps == pytest.approx(dual_ddr4)
    assert any("the memory set the pace" in a for a in many.assumptions)
    assert any("could not be read (on Linux that needs root)" in a for a in many.assumptions)
    ddr5 = machine_speed(cpu_only(32, cores=32, memory_type="DDR5"), data)
    assert ddr5.cpu.gbps > many.cpu.gbps
    one_stick = machine_speed(cpu_only(32, cores=32, memory_type="DDR5", modules=1), data)
    assert one_stick.cpu.gbps == pytest.approx(ddr5.cpu.gbps / 2)


def test_unknown_core_count_is_assumed_and_said(catalogue: Catalogue, data: SpeedData) -> None:
    rec = recommend(catalogue, cpu_only(32))
    assert any(
        f"CPU core count unknown: assumed {data.unknown_cores}" in a for a in rec.assumptions
    )


def test_mixture_of_experts_reads_only_its_active_experts(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, cpu_only(32, cores=8))
    moe = rec.fits["deepseek-coder-v2:16b"].tokens_per_second
    dense = rec.fits["deepseek-r1:14b"].tokens_per_second
    assert moe is not None
    assert dense is not None
    # About the same download, but 2.4B of 15.7B parameters active per token.
    assert moe / dense == pytest.approx(9.0 / 8.9 * 15.7 / 2.4)


def test_a_model_partly_in_vram_is_between_cpu_and_gpu_speed(
    catalogue: Catalogue, data: SpeedData
) -> None:
    hw = nvidia(8, name="NVIDIA GeForce RTX 4060", cores=8)
    fit = fit_model(catalogue.local["deepseek-r1:14b"], hw, machine_speed(hw, data))
    assert not fit.on_gpu
    assert fit.on_cpu
    assert 0.5 < fit.gpu_share < 1
    speed = machine_speed(hw, data)
    on_cpu = speed.tokens_per_second(catalogue.local["deepseek-r1:14b"], 0)
    on_gpu = speed.tokens_per_second(catalogue.local["deepseek-r1:14b"], 1)
    assert on_cpu is not None
    assert on_gpu is not None
    assert fit.tokens_per_second is not None
    assert on_cpu < fit.tokens_per_second < on_gpu


def test_cpu_only_says_what_it_assumed(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, cpu_only(16))
    text = " | ".join(rec.assumptions)
    assert "no NVIDIA GPU found" in text
    assert "runs on the CPU from RAM; kept 25% headroom" in text
    assert "speed estimate on the CPU" in text


def test_small_gpu_falls_back_to_cpu_and_says_so(catalogue: Catalogue) -> None:
    rec = recommend(catalogue, nvidia(1, ram_gib=16, cores=2))
    assert rec.tag == "deepseek-r1:1.5b"
    assert rec.runs_on == "gpu+cpu"  # the 1 GiB card still holds half of it
    assert "in RAM, partly on the GPU" in rec.reason
    assert any(
        a.startswith("models that do not fit the GPU run on the CPU") for a in rec.assumptions
    )


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
    assert rec.fits["deepseek-r1:671b"].tokens_per_second is None
    assert all(f.tokens_per_second for f in rec.fits.values() if f.fits)
    assert not fit_model(catalogue.local["deepseek-v3:671b"], cpu_only(64)).fits


# -- settings and overrides ------------------------------------------------------------------


def test_min_speed_setting_is_used(catalogue: Catalogue) -> None:
    settings = load_settings(env={"DSOLLAMA_MIN_SPEED": "0"})
    assert settings.min_speed == 0
    assert recommend_for(catalogue, cpu_only(24, cores=2), settings).tag == "deepseek-r1:14b"
    assert load_settings().min_speed == 8
    with pytest.raises(ConfigError, match="min_speed"):
        load_settings(env={"DSOLLAMA_MIN_SPEED": "-1"})


def test_speed_table_is_extended_by_the_catalogue_file(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_text(
        '[speed.gpu.bandwidth_gbps]\n"Mystery Accelerator 9000" = 1000\n', encoding="utf-8"
    )
    settings = load_settings(catalogue_path=str(path))
    rec = recommend_for(catalogue, nvidia(24, name="Mystery Accelerator 9000"), settings)
    assert rec.tag == "deepseek-r1:32b"
    assert not any("not in the speed table" in a for a in rec.assumptions)
    # The built-in table is merged, not replaced.
    assert "RTX 4090" in load_speed_data(str(path)).gpus


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[speed.efficiency]\ngpu = 1.5\n", "efficiency.gpu is a share of peak bandwidth"),
        ("[speed.cpu]\nper_core_gbps = -1\n", "cpu.per_core_gbps must be a positive number"),
        ('[speed.gpu.bandwidth_gbps]\n"RTX 4090" = "fast"\n', "'RTX 4090'"),
        ('[speed.cpu]\ndefault_memory = "DDR9"\n', "default_memory 'DDR9' is not in memory_mts"),
        ("speed = 3\n", "'speed' must be a table"),
    ],
)
def test_bad_speed_data_is_a_clear_config_error(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_speed_data(str(path))
    assert problem in str(caught.value)


@pytest.mark.parametrize("module", [_hardware, _speed])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
