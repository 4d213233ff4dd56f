"""CPU allocator tuning for repeated inference on large images.

A U-Net at full resolution allocates and frees tensors of tens of MB at every layer. glibc's ``malloc`` serves
such blocks with fresh ``mmap`` pages (and returns freed heap tops to the OS), so every layer of every step
page-faults its output into memory again. :func:`reuse_freed_memory` makes freed blocks stay in the process
heap and be reused by the next layer, step and call -- the buffer reuse that jemalloc/tcmalloc give PyTorch CPU
deployments, without preloading another allocator; on a 2-core CPU a DRU(4) forward gets 20-26% faster at
576x576-1024x1024 (``benchmarks/allocator.py``). Outputs are unchanged; the cost is that the process keeps (up to ``keep_bytes``
of) its peak working set instead of handing it back to the OS between calls.

The setting is process-wide (it changes ``malloc`` for all code in the process) and is applied at most once;
it is a no-op off glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["MMAP_THRESHOLD_MAX", "reuse_freed_memory", "freed_memory_reused"]

# mallopt parameters (glibc <malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems (4 * 1024 * 1024 * sizeof(long)).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024

_applied: bool | None = None  # None: not asked yet; else whether the tuning took effect


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # musl and other C libraries: leave their allocator alone
    return libc


def reuse_freed_memory(keep_bytes: int = 1 << 30) -> bool:
    """Keep freed CPU memory in the heap for reuse instead of returning it to the OS (glibc only).

    Sets ``M_MMAP_THRESHOLD`` to its maximum (32 MiB: blocks up to that size come from the reusable heap, not
    from fresh ``mmap`` pages) and ``M_TRIM_THRESHOLD`` to ``keep_bytes`` (free memory at the heap top is handed
    back only beyond that). Process-wide; applied once (later calls return the first result).

    Returns:
        ``True`` when the allocator was tuned, ``False`` where it is not glibc's (nothing changed).
    """
    global _applied
    if keep_bytes < 0:
        raise ValueError(f"keep_bytes must be >= 0, got {keep_bytes}.")
    if _applied is None:
        libc = _glibc()
        _applied = (
            libc is not None
            and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, min(int(keep_bytes), 2**31 - 1)) == 1
        )
    return _applied


def freed_memory_reused() -> bool:
    """Whether :func:`reuse_freed_memory` has tuned this process's allocator."""
    return bool(_applied)
