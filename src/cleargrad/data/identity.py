"""What identifies a data set on disk, for run settings and resume checks.

A folder (or one file) is identified by its resolved path and a digest of its file list:
for every image file that a run would read (:func:`~cleargrad.data.image_folder.list_images`,
sorted), its path relative to the folder, its size in bytes and its modification time in
nanoseconds. Adding, removing, renaming, resizing or touching an image changes the
digest; the file contents are not read (cheap on large folders). Two copies of a folder
at different places have different identities (the path is part of it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = ["dataset_identity", "file_list_digest"]


def file_list_digest(root: Path, files: list[Path]) -> str:
    """SHA-256 (16 hex digits) of ``(relative path, size, mtime_ns)`` of each file."""
    h = hashlib.sha256()
    for f in sorted(files):
        try:
            st = f.stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        rel = f.relative_to(root).as_posix() if f != root else f.name
        h.update(f"{rel}\0{size}\0{mtime}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def dataset_identity(source: str | os.PathLike) -> dict[str, Any]:
    """``{"path": resolved path, "files": count, "digest": file-list digest}`` of a folder
    of images or of one image file (see the module docstring)."""
    from .image_folder import list_images

    path = Path(source).resolve()
    if path.is_dir():
        files = list_images(path)
        return {"path": str(path), "files": len(files), "digest": file_list_digest(path, files)}
    return {"path": str(path), "files": 1, "digest": file_list_digest(path.parent, [path])}
