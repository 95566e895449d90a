"""What the agent can tell about its device: CPU, memory, OS, runtimes, and the live clock/thermal state."""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from latfarm.agents.backends import available_backends
from latfarm.proto.v1 import agent_pb2

CPU_SYS = Path("/sys/devices/system/cpu")
THERMAL_SYS = Path("/sys/class/thermal")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpuinfo() -> dict[str, str]:
    """First-processor fields of /proc/cpuinfo (plus ``Hardware`` on ARM, which comes last)."""
    fields: dict[str, str] = {}
    for line in (_read(Path("/proc/cpuinfo")) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    info = _cpuinfo()
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine()


def cpu_max_mhz() -> float:
    """Highest cpuinfo_max_freq over the cores, in MHz; 0 when not readable."""
    freqs = [_read(p) for p in CPU_SYS.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")]
    values = [int(f) / 1000 for f in freqs if f and f.isdigit()]
    return max(values, default=0.0)


def memory_bytes() -> int:
    """Physical memory in bytes; 0 when not readable."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def governor() -> str:
    """The cpufreq governor of CPU 0 ("performance", "schedutil", ...); empty when not readable."""
    return _read(CPU_SYS / "cpu0/cpufreq/scaling_governor") or ""


def current_mhz(cpus: list[int] | None = None) -> float:
    """Mean current frequency of the given CPUs (default: all), from cpufreq else /proc/cpuinfo; 0 if unknown."""
    paths: Iterable[Path] = CPU_SYS.glob("cpu[0-9]*/cpufreq/scaling_cur_freq")
    if cpus:
        paths = [CPU_SYS / f"cpu{cpu}/cpufreq/scaling_cur_freq" for cpu in cpus]
    values = [int(f) / 1000 for f in map(_read, paths) if f and f.isdigit()]
    if not values:
        lines = (_read(Path("/proc/cpuinfo")) or "").splitlines()
        values = [float(line.partition(":")[2]) for line in lines if line.startswith("cpu MHz")]
    return sum(values) / len(values) if values else 0.0


def temperature_c() -> float:
    """Highest thermal-zone temperature in °C; 0 when not readable."""
    temps = [_read(zone / "temp") for zone in THERMAL_SYS.glob("thermal_zone*")]
    values = [int(t) / 1000 for t in temps if t and t.lstrip("-").isdigit()]
    return max(values, default=0.0)


@dataclass(frozen=True)
class ClockState:
    """Frequency and temperature at one moment, for a batch's provenance."""

    freq_mhz: float
    temp_c: float

    @classmethod
    def now(cls, cpus: list[int] | None = None) -> ClockState:
        """The state now, of the given CPUs' clocks (default: all)."""
        return cls(freq_mhz=current_mhz(cpus), temp_c=temperature_c())


def describe() -> agent_pb2.DeviceDescriptor:
    """The device descriptor sent at registration (and with heartbeats)."""
    backends = available_backends()
    runtimes = {b.runtime: b.version for b in backends.values()}
    onnx = backends.get("onnx")
    litert = backends.get("tflite")
    temp = temperature_c()
    mhz = current_mhz()
    readings = {"governor": governor(), "temp_c": f"{temp:.1f}" if temp else "", "cpu_mhz": f"{mhz:.0f}" if mhz else ""}
    extra = {k: v for k, v in readings.items() if v}
    if onnx is not None:
        extra["onnxruntime_device"] = onnx.device
    return agent_pb2.DeviceDescriptor(
        hostname=socket.gethostname(),
        cpu_model=cpu_model(),
        cpu_cores=os.cpu_count() or 0,
        cpu_max_mhz=cpu_max_mhz(),
        memory_bytes=memory_bytes(),
        os=platform.system(),
        os_release=platform.release(),
        machine=platform.machine(),
        python=platform.python_version(),
        runtimes=runtimes,
        onnx_providers=onnx.providers if onnx else [],
        litert_delegates=litert.providers if litert else [],
        formats=sorted(backends),
        extra=extra,
    )
