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


def describe() -> str:
    """E.g. 'x86_64, 2 cores, Intel(R) Xeon(R) ..., Linux 6.1, Python 3.11.7'."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, "
            f"{platform.system()} {platform.release().split('-')[0]}, Python {platform.python_version()}")


def slug() -> str:
    """A file-name-safe short name of the machine, e.g. 'x86_64-2cores-amd-epyc-7b13'."""
    cpu = re.sub(r"\(r\)|\(tm\)|processor|\d+-core|cpu @.*", "", cpu_model().lower())
    cpu = re.sub(r"[^a-z0-9]+", "-", cpu).strip("-")
    return f"{platform.machine()}-{os.cpu_count()}cores-{cpu}"[:60].rstrip("-")
