"""Peak memory of a stretch of work: GPU allocator peak, or the process's RSS high-water mark.

On Linux the RSS high-water mark can be reset (/proc/self/clear_refs, "5"), so a peak
measured in-process belongs to the measured work alone; freed heap memory is handed
back first (malloc_trim) so that reused old pages do not hide the growth.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field} missing from {_STATUS}")


def _trim_heap() -> None:
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


class PeakMemory:
    """with PeakMemory(device) as peak: ...; then peak.bytes (None where not measurable)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "peak allocated" if device.type == "cuda" else "peak RSS growth"
        self.bytes: int | None = None
        self._base = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                _trim_heap()
                _CLEAR_REFS.write_text("5")
                self._base = _status_bytes("VmRSS")
            except OSError:
                self._base = -1  # no resettable high-water mark here
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._base >= 0:
            self.bytes = _status_bytes("VmHWM") - self._base
