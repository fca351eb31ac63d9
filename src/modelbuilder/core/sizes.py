"""The compute size catalog, its prices, and what this host really has.

Sizes mirror the cloud VM sizes users know; prices are hourly list prices in USD for a dedicated
machine (Linux, pay-as-you-go, East US), and a low-priority machine costs `low_priority_discount`
less. Both can be overridden with a JSON or YAML file (`{"prices": {"Standard_NC12": 1.5},
"low_priority_discount": 0.8}`).

`auto` is this host. GPUs are counted without importing torch (the control plane stays light and
must not initialise CUDA in a process that forks workers): `nvidia-smi` when it is installed, else
the entries of /proc/driver/nvidia/gpus; `CUDA_VISIBLE_DEVICES` narrows the count as CUDA would.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import yaml

from modelbuilder.config import get_settings
from modelbuilder.errors import InvalidInput

AUTO = "auto"
DEFAULT_LOW_PRIORITY_DISCOUNT = 0.8


@dataclass(frozen=True)
class SizeSpec:
    name: str
    vcpus: int
    memory_gib: float
    temp_storage_gib: float
    gpus: int
    gpu_memory_gib: float  # all GPUs together
    max_data_disks: int
    max_nics: int
    price_per_hour: float  # USD, dedicated
    gpu_model: str = ""


_CATALOG: tuple[SizeSpec, ...] = (
    SizeSpec("Standard_F1s", 1, 2, 4, 0, 0, 4, 2, 0.0497),
    SizeSpec("Standard_F2s_v2", 2, 4, 16, 0, 0, 4, 2, 0.0846),
    SizeSpec("Standard_D2s_v3", 2, 8, 16, 0, 0, 4, 2, 0.096),
    SizeSpec("Standard_D4s_v3", 4, 16, 32, 0, 0, 8, 2, 0.192),
    SizeSpec("Standard_D8s_v3", 8, 32, 64, 0, 0, 16, 4, 0.384),
    SizeSpec("Standard_NC4as_T4_v3", 4, 28, 180, 1, 16, 8, 2, 0.526, "Tesla T4"),
    SizeSpec("Standard_NC6", 6, 56, 340, 1, 12, 24, 1, 0.90, "Tesla K80"),
    SizeSpec("Standard_NC12", 12, 112, 680, 2, 24, 48, 2, 1.80, "Tesla K80"),
    SizeSpec("Standard_NC24", 24, 224, 1440, 4, 48, 64, 4, 3.60, "Tesla K80"),
    SizeSpec("Standard_NC24ads_A100_v4", 24, 220, 64, 1, 80, 12, 2, 3.673, "A100 80GB"),
)


@dataclass(frozen=True)
class HostCapacity:
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_memory_gib: float | None  # None when it could not be read
    gpu_names: tuple[str, ...] = ()


def _memory_gib() -> float:
    total = psutil.virtual_memory().total
    try:  # a container's memory limit (cgroup v2) is what a run can really use
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total / 2**30


def _nvidia_smi() -> list[tuple[str, float | None]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus: list[tuple[str, float | None]] = []
    for line in out.strip().splitlines():
        name, _, memory = line.rpartition(",")
        try:
            gpus.append((name.strip(), float(memory) / 1024))
        except ValueError:
            gpus.append((line.strip(), None))
    return gpus


def _visible(gpus: list[tuple[str, float | None]]) -> list[tuple[str, float | None]]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return gpus
    items = [item.strip() for item in visible.split(",") if item.strip()]
    if all(item.isdigit() for item in items):
        return [gpus[int(i)] for i in items if int(i) < len(gpus)]
    return gpus[: len(items)]  # UUIDs or MIG names: trust their count


@functools.cache
def host_capacity() -> HostCapacity:
    """What this host offers to local computes (cached: it does not change while we run)."""
    try:
        vcpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        vcpus = os.cpu_count() or 1
    gpus = _nvidia_smi()
    if gpus is None:
        proc = Path("/proc/driver/nvidia/gpus")
        gpus = [("NVIDIA GPU", None) for _ in proc.iterdir()] if proc.is_dir() else []
    gpus = _visible(gpus)
    memories = [memory for _, memory in gpus]
    gpu_memory = None if any(m is None for m in memories) else float(sum(m for m in memories if m))
    return HostCapacity(vcpus, round(_memory_gib(), 1), len(gpus), gpu_memory, tuple(n for n, _ in gpus))


def host_size(host: HostCapacity | None = None) -> SizeSpec:
    """The `auto` size: this host as it is, at no list price (it is already paid for)."""
    host = host or host_capacity()
    try:
        disk = shutil.disk_usage(Path.home()).total / 2**30
    except OSError:
        disk = 0.0
    names = sorted(set(host.gpu_names))
    return SizeSpec(
        AUTO,
        host.vcpus,
        host.memory_gib,
        round(disk),
        host.gpus,
        host.gpu_memory_gib or 0.0,
        0,
        1,
        0.0,
        ", ".join(names),
    )


def shortfalls(size: SizeSpec, host: HostCapacity) -> list[str]:
    """What `size` needs that `host` lacks; empty when it fits.

    Memory is compared with a 10 % margin: a machine sold as 16 GiB reports a little less.
    """
    missing = []
    if size.gpus > host.gpus:
        missing.append(f"{size.gpus} GPU(s) (this host has {host.gpus})")
    elif size.gpus and host.gpu_memory_gib is not None and size.gpu_memory_gib > host.gpu_memory_gib * 1.1:
        missing.append(f"{size.gpu_memory_gib:g} GiB of GPU memory (this host has {host.gpu_memory_gib:.0f})")
    if size.vcpus > host.vcpus:
        missing.append(f"{size.vcpus} vCPUs (this host has {host.vcpus})")
    if size.memory_gib > host.memory_gib * 1.1:
        missing.append(f"{size.memory_gib:g} GiB of memory (this host has {host.memory_gib:.0f})")
    return missing


class SizeCatalog:
    """The sizes and their prices, optionally overridden from a JSON/YAML file."""

    def __init__(self, sizes: Iterable[SizeSpec] = _CATALOG, prices_file: str | Path | None = None) -> None:
        self.low_priority_discount = DEFAULT_LOW_PRIORITY_DISCOUNT
        self._sizes = {s.name: s for s in sizes}
        if prices_file is not None:
            self._load_prices(Path(prices_file))

    def _load_prices(self, path: Path) -> None:
        try:
            text = path.read_text()
            data: Any = json.loads(text) if path.suffix == ".json" else _yaml(text)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"Prices file {str(path)!r} cannot be read: {exc}.", "fix or remove it.") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"Prices file {str(path)!r} must hold a mapping.", "see modelbuilder.core.sizes.")
        for name, price in (data.get("prices") or {}).items():
            spec = self._sizes.get(name)
            if spec is None or not isinstance(price, int | float) or price < 0:
                raise InvalidInput(
                    f"Prices file {str(path)!r}: {name!r}: {price!r} is not a known size with a price >= 0.",
                    f"use sizes from: {', '.join(self._sizes)}.",
                )
            self._sizes[name] = replace(spec, price_per_hour=float(price))
        discount = data.get("low_priority_discount", self.low_priority_discount)
        if not isinstance(discount, int | float) or not 0 <= discount < 1:
            raise InvalidInput(
                f"Prices file {str(path)!r}: low_priority_discount {discount!r} is not valid.",
                "use a fraction such as 0.8 (80 % off).",
            )
        self.low_priority_discount = float(discount)

    def names(self) -> list[str]:
        return [*self._sizes, AUTO]

    def sizes(self) -> list[SizeSpec]:
        """Every size, `auto` (this host) last."""
        return [*self._sizes.values(), host_size()]

    def canonical(self, name: str) -> str:
        """The catalog's spelling of `name` (sizes are matched case-insensitively)."""
        for known in self.names():
            if isinstance(name, str) and known.lower() == name.lower():
                return known
        raise InvalidInput(f"Size {name!r} is not in the catalog.", f"use one of: {', '.join(self.names())}.")

    def get(self, name: str) -> SizeSpec:
        name = self.canonical(name)
        return host_size() if name == AUTO else self._sizes[name]

    def price_per_hour(self, size: str, priority: str) -> float:
        """Hourly price in USD of `size` at `priority` ('dedicated' or 'low-priority')."""
        if self.canonical(size) == AUTO:
            return 0.0
        price = self._sizes[self.canonical(size)].price_per_hour
        return round(price * (1 - self.low_priority_discount) if priority == "low-priority" else price, 6)


def _yaml(text: str) -> Any:

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def default_catalog() -> SizeCatalog:
    """The catalog with prices from the settings' `prices_file`, when one is configured."""
    return SizeCatalog(prices_file=getattr(get_settings(), "prices_file", None))
