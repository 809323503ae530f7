"""Atomic file writes: a file a command writes is either absent, its old complete
version, or its new complete version, whatever moment the process is killed.

Every file is written to a temporary file in the same folder (``.<name>.<random>.tmp``),
flushed and ``fsync``-ed, then renamed over the destination with :func:`os.replace`
(atomic on POSIX and Windows within one file system); the folder is ``fsync``-ed after
the rename where the platform allows it. A process killed mid-write leaves at most such a
hidden ``.tmp`` file behind (never under the destination's name); it can be deleted.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_path",
    "atomic_save_npy",
    "atomic_write",
    "is_complete_png",
    "is_temp_file",
    "refuse_same_file",
]

TEMP_SUFFIX = ".tmp"


def is_temp_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary file of :func:`atomic_path` (a leftover of a kill)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on normal exit it is synced and renamed
    over ``path``; on an exception it is deleted and ``path`` left as it was.

    >>> with atomic_path("out.csv") as tmp:
    ...     tmp.write_text("a,b\\n")
    """
    dest = Path(path)
    folder = dest.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name[:100]}.", suffix=TEMP_SUFFIX, dir=folder)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if dest.exists():  # keep the destination's permission bits
            with contextlib.suppress(OSError):
                os.chmod(tmp, dest.stat().st_mode & 0o7777)
        else:
            with contextlib.suppress(OSError):
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[Path], object]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function that writes the temporary path
    it is given) to ``path`` atomically; returns ``path``."""
    dest = Path(path)
    with atomic_path(dest) as tmp:
        if callable(data):
            data(tmp)
        elif isinstance(data, str):
            tmp.write_bytes(data.encode("utf-8"))
        else:
            tmp.write_bytes(bytes(data))
    return dest


def atomic_save_npy(path: str | os.PathLike, array: object) -> Path:
    """``numpy.save`` of ``array`` to exactly ``path`` (no suffix added), atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array))

    return atomic_write(path, write)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_complete_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file that starts with the PNG signature and ends with the
    ``IEND`` chunk (a torn PNG does not); reads 20 bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_PNG_SIGNATURE))
            f.seek(0, os.SEEK_END)
            if f.tell() < len(_PNG_SIGNATURE) + len(_PNG_END):
                return False
            f.seek(-len(_PNG_END), os.SEEK_END)
            return head == _PNG_SIGNATURE and f.read() == _PNG_END
    except OSError:
        return False


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def refuse_same_file(out: str | os.PathLike, source: str | os.PathLike, option: str = "--out") -> None:
    """Refuse an output path that is (resolves to, or is a hard link of) ``source``.

    Raises:
        ConfigError: naming both paths.
    """
    if _same(Path(out), Path(source)):
        raise ConfigError(
            f"{option} {out} is the input file {source} itself; writing it would destroy the input. "
            "Give another output path"
        )
