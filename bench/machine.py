"""Machine and library facts recorded next to every benchmark result."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata


def machine_info(packages: tuple[str, ...] = ("keras", "keras-hub", "jax", "datasets", "pymorphy3")) -> dict:
    """CPU, cores, memory, OS, Python and package versions, and the time of the run.

    Example:
        >>> "cpu_count" in machine_info()
        True
    """
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }
