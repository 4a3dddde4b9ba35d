"""Peak memory of a block of code: CUDA's allocator statistics, or the process's resident set on CPU.

On CPU the kernel's peak resident set (VmHWM, reset through /proc/self/clear_refs) is read; where clear_refs is not
writable, a thread samples VmRSS every millisecond. glibc's heap is tuned so that the resident set follows the live
tensors (cache_cpu_heap, and PeakMemory's exact_rss).
"""

from __future__ import annotations

import ctypes
import gc
import sys
import threading

import torch


def release(device: torch.device) -> None:
    """Free what the garbage collector can, and give freed memory back (CUDA cache, glibc heap)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    elif sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: RSS may keep freed pages (see PeakMemory)
            pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt options
_HEAP_BLOCK_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_EXACT_RSS_BLOCK = 64 * 2**10


def _mallopt(option: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(option, value))
    except (OSError, AttributeError):  # not glibc
        return False


def cache_cpu_heap() -> bool:
    """Make glibc keep freed heap memory for reuse (blocks up to 32 MiB), as CUDA's caching allocator does on GPU.

    PyTorch's CPU allocator caches nothing, and glibc's defaults give large freed blocks back to the kernel, so fresh
    activations are page-faulted in again and again. On the 2-core VM this was written on a page fault cost about
    6 us, and an out-of-place op on 2 MiB took 0.7 ms instead of 0.05: the timings measured the kernel, not the
    method. Blocks over 32 MiB are still mapped afresh. Returns whether glibc took the settings.
    """
    return _mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and _mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_MAX)


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class PeakMemory:
    """``with PeakMemory(device) as peak:`` ... ``peak.bytes``: peak memory in the block over that at its start.

    ``exact_rss`` (CPU, glibc, with cache_cpu_heap in force): inside the block every allocation of 64 KiB or more
    is mapped on its own and unmapped when freed, so the resident set follows the live tensors instead of what a
    fragmented heap happens to hold (repeats then agree to 0.1 MiB instead of +-40 MiB at cpu-small).
    """

    def __init__(self, device: torch.device, exact_rss: bool = False):
        self.device = device
        self.exact_rss = exact_rss and device.type == "cpu"
        self.bytes: int | None = None
        self.how = ""
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled_kib = 0

    def __enter__(self) -> PeakMemory:
        release(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.how = "cuda max_memory_allocated delta"
            return self
        if self.exact_rss and not _mallopt(_M_MMAP_THRESHOLD, _EXACT_RSS_BLOCK):
            self.exact_rss = False
        self._start = _proc_status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.how = "cpu VmHWM delta (clear_refs)" + (", 64 KiB blocks mapped alone" if self.exact_rss else "")
        except OSError:
            self.how = "cpu VmRSS sampled every 1 ms, delta"
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._sampled_kib = max(self._sampled_kib, _proc_status_kib("VmRSS"))

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._sampler is None:
            self.bytes = (_proc_status_kib("VmHWM") - self._start) * 1024
        else:
            self._stop.set()
            self._sampler.join()
            self.bytes = (max(self._sampled_kib, _proc_status_kib("VmRSS")) - self._start) * 1024
        if self.exact_rss:
            _mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_MAX)
