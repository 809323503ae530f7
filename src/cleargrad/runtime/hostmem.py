"""Keep the C allocator's cache of freed host memory bounded, so that peak resident memory
follows the batch settings.

On Linux with glibc, PyTorch's CPU tensors come from ``malloc``. glibc keeps freed blocks
for reuse and returns memory to the system only from the top of its heap; tensors of many
different sizes (a protocol of several methods and metrics at 224²) fragment the heap, and
the freed-but-kept memory grows with the run, so peak memory varies from run to run
(measured: benchmarks/results/evaluate_pipeline.md, section 6).

:func:`release_host_memory` compares the resident memory with its level after the last
release; when it has grown by more than the limit (:func:`set_host_cache_limit`, default
256 MiB, or the ``CLEARGRAD_HOST_CACHE_MB`` environment variable; ``off`` disables), it
hands glibc's freed pages back with ``malloc_trim(0)`` and takes the new level. Memory
that is alive stays; growth from live tensors only costs one trim per limit's worth.
:func:`~cleargrad.core.chunk_slices` calls it between chunks and the evaluation engine
after every method and metric, so every chunked loop is covered. Below the limit nothing
is trimmed and freed memory is reused as before. Elsewhere (macOS, Windows, musl) the
calls are no-ops. GPU memory is not concerned (PyTorch's caching
allocator).

**Reuse mode** (:func:`set_host_memory_reuse`, or ``CLEARGRAD_HOST_REUSE=on`` in the
environment at import; on in the ``cleargrad`` command, opt-in from Python). By default
glibc serves large blocks (from 128 KiB, adjusted up to 32 MiB) with ``mmap`` and unmaps
them when freed, and returns the top of its heap once 128 KiB or more are free there: at
224² every forward pass gets its feature maps as fresh pages, which the kernel zero-fills on
first touch. Reuse mode sets ``M_MMAP_MAX = 0`` (every block from the heap) and a 2 GiB
``M_TRIM_THRESHOLD``, so freed memory is reused by the next pass, and the release above then
keeps up to the largest working set it has seen plus the limit: a trim happens when resident
memory has grown by more than (limit + the largest growth that led to an earlier trim) since
the last release. Peak memory stays bounded by the batch settings, and the next pass finds
its pages already mapped (measured: benchmarks/results/host_allocator.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from ..errors import ConfigError

__all__ = [
    "cached_host_bytes",
    "get_host_cache_limit",
    "host_memory_reuse",
    "release_host_memory",
    "resident_bytes",
    "set_host_cache_limit",
    "set_host_memory_reuse",
]

_DEFAULT_MIB = 256
# glibc's mallopt parameters and their defaults
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_REUSE_TRIM_THRESHOLD = 2**31 - 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")
    ]


def _load_glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc; musl has none
        open("/proc/self/statm").close()
    except (OSError, AttributeError):
        return None
    if hasattr(libc, "mallopt"):
        libc.mallopt.restype, libc.mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
        libc.mallinfo2.restype, libc.mallinfo2.argtypes = _MallInfo2, []
    trim.restype, trim.argtypes = ctypes.c_int, [ctypes.c_size_t]
    return libc


def _limit_bytes(mib: object, what: str) -> int:
    """``mib`` (a number >= 0) in bytes; ConfigError naming ``what`` otherwise."""
    if isinstance(mib, bool) or not isinstance(mib, (int, float)) or mib < 0:
        raise ConfigError(f"{what} must be a number of MiB >= 0 or off/None, got {mib!r}")
    return int(mib * 2**20)


def _parse_limit(value: str) -> int | None:
    if value.strip().lower() in ("off", "none", ""):
        return None
    mib: object
    try:
        mib = float(value)
    except ValueError:
        mib = value  # rejected below, with the same message
    return _limit_bytes(mib, "CLEARGRAD_HOST_CACHE_MB")


_libc = _load_glibc()
_limit: int | None = _parse_limit(os.environ.get("CLEARGRAD_HOST_CACHE_MB", str(_DEFAULT_MIB)))
_floor: int | None = None  # resident bytes after the last release
_reuse = False
_working_set = 0  # reuse mode: the largest growth since a release that led to a trim
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def set_host_cache_limit(mib: float | None) -> None:
    """How much resident memory (MiB) may grow since the last release before the C
    allocator's freed pages are handed back to the system; ``None`` turns the release off
    (glibc's own behaviour)."""
    global _limit
    _limit = None if mib is None else _limit_bytes(mib, "the host cache limit")


def set_host_memory_reuse(on: bool = True) -> bool:
    """Let glibc keep freed memory, large blocks included, for the next pass (see the module's
    docstring): faster CPU passes at large inputs, peak memory still bounded by the release.

    A process-wide setting (``mallopt``), like the release itself; ``False`` puts glibc's
    default values back (its dynamic mmap threshold stays off: it stops at the first
    ``mallopt``). Returns whether it took effect (False where the C library is not glibc).
    """
    global _reuse, _working_set
    if _libc is None or not hasattr(_libc, "mallopt"):
        return False
    mmap_max, trim = (0, _REUSE_TRIM_THRESHOLD) if on else (_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD)
    ok = _libc.mallopt(_M_MMAP_MAX, mmap_max) and _libc.mallopt(_M_TRIM_THRESHOLD, trim)
    _reuse, _working_set = bool(on and ok), 0
    return bool(ok)


_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no", "")


def _reuse_from_environment(value: str | None) -> bool:
    v = (value or "off").strip().lower()
    if v not in _ON + _OFF:
        raise ConfigError(f"CLEARGRAD_HOST_REUSE must be on or off, got {value!r}")
    return v in _ON


def host_memory_reuse() -> bool:
    """Whether :func:`set_host_memory_reuse` is on."""
    return _reuse


def get_host_cache_limit() -> float | None:
    """The current limit in MiB (None: off)."""
    return None if _limit is None else _limit / 2**20


def cached_host_bytes() -> int | None:
    """Freed memory the C allocator holds for reuse (resident or not), in bytes; None where
    it cannot be asked (not glibc >= 2.33). For diagnostics."""
    if _libc is None or not hasattr(_libc, "mallinfo2"):
        return None
    return int(_libc.mallinfo2().fordblks)


def resident_bytes() -> int | None:
    """This process's resident memory now, in bytes (None where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_host_memory(force: bool = False) -> bool:
    """Hand the C allocator's freed pages back to the system when resident memory has grown
    by more than the limit since the last release (in reuse mode: the limit plus the largest
    growth that led to an earlier trim); ``force``: now, whatever the growth; never when the
    limit is off. Returns whether it trimmed."""
    global _floor, _working_set
    if _libc is None or _limit is None:
        return False
    rss = resident_bytes()
    if rss is None:
        return False
    allowed = _limit + (_working_set if _reuse else 0)
    if not force and (_floor is None or rss - _floor <= allowed):
        _floor = rss if _floor is None else min(_floor, rss)  # the first look only sets the level
        return False
    if _reuse and _floor is not None:
        _working_set = max(_working_set, rss - _floor)
    _libc.malloc_trim(0)
    _floor = resident_bytes()
    return True


if _reuse_from_environment(os.environ.get("CLEARGRAD_HOST_REUSE")):  # the cleargrad command sets it
    set_host_memory_reuse(True)
