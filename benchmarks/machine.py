"""One line naming the machine a benchmark ran on, for reports and the README."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


#: The x86 instruction sets int8 and float inference speed depends on, by the /proc/cpuinfo flags that show them.
ISA_FLAGS = {"AVX2": ("avx2",), "AVX-512 VNNI": ("avx512_vnni",), "AMX": ("amx_tile", "amx_int8")}


def isa_features(flags: set[str] | None = None) -> dict[str, bool]:
    """Which of AVX2, AVX-512 VNNI and AMX the CPU has (all False where /proc/cpuinfo is missing or not x86).

    int8 kernels differ several-fold between a CPU with AMX or VNNI and one without, so a
    latency means little without them.
    """
    if flags is None:
        flags = set()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.is_file():
            for line in cpuinfo.read_text().splitlines():
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    return {name: all(flag in flags for flag in needed) for name, needed in ISA_FLAGS.items()}


def describe() -> str:
    """E.g. 'x86_64, 2 cores, Intel(R) Xeon(R) ..., AVX2 yes, AVX-512 VNNI yes, AMX no, Linux 6.1, Python 3.11.7'."""
    isa = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in isa_features().items())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, {isa}, "
        f"{platform.system()} {platform.release().split('-')[0]}, Python {platform.python_version()}"
    )


def slug() -> str:
    """A file-name-safe short name of the machine, e.g. 'x86_64-2cores-amd-epyc-7b13'."""
    cpu = re.sub(r"\(r\)|\(tm\)|processor|\d+-core|cpu @.*", "", cpu_model().lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")
    return f"{platform.machine()}-{os.cpu_count()}cores-{cpu}"[:60].rstrip("-")
