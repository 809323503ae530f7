"""Reading IDX files (the MNIST / Fashion-MNIST array format), gzipped or not."""

from __future__ import annotations

import gzip
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["read_idx", "write_idx"]

# IDX type codes -> big-endian numpy dtypes
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a read-only numpy array in native byte order.

    Parsed files are cached in memory per (path, size, modification time), so reading
    the same file twice in a process is cheap.

    Raises:
        DataError: the file is missing, truncated or not an IDX file.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise DataError(f"cannot read IDX file {p}: {e}") from None
    return _read_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_cached(path: str, _size: int, _mtime: int) -> np.ndarray:
    p = Path(path)
    try:
        with _open(p) as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {p}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{p} is not an IDX file (bad magic number)")
    dtype, ndim = _DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p} is truncated (header of a {ndim}-D IDX array)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{p} is truncated or corrupt: header says shape {shape} "
            f"({count * dtype.itemsize} bytes) but {len(raw) - header} bytes follow"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("="))
    arr.setflags(write=False)
    return arr


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); mainly for
    tests and for exporting small data sets in the Fashion-MNIST layout."""
    a = np.asarray(array)
    code = _CODES.get(a.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {a.dtype}; use uint8, int8, int16, int32, float32 or float64")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    body = a.astype(_DTYPES[code]).tobytes()
    with (gzip.open(p, "wb") if p.suffix == ".gz" else open(p, "wb")) as f:
        f.write(header + body)
    return p
