"""Files that survive a power cut, a dead NFS client or a full disk, on storage other hosts share.

- names of temp files and locks are unique across hosts (host, pid and a random part), not only the pid:
  pids repeat across machines and KubeRay pods writing to one shared folder;
- a rewrite goes to a temp file that is fsynced and renamed over the old one, then the folder is fsynced:
  a reader sees the old content or the new, never half of either;
- a line-oriented record (metrics.jsonl, eval.jsonl) whose writer died mid-line has a torn last line:
  readers skip it, and the next writer cuts it off before appending, so it never glues onto a new line.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

TEMP_PREFIX = ".tmp-"
"""Every temp file or folder this module names starts so (a sweep finds the leftovers of dead writers)."""


def unique_tag() -> str:
    """host-pid-random: distinct for every writer, on every host sharing the storage."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def temp_path(final: str | Path) -> Path:
    """A temp name beside `final` (same folder, so the rename is atomic) no other writer uses."""
    final = Path(final)
    return final.with_name(f"{TEMP_PREFIX}{final.name}-{unique_tag()}")


def fsync_dir(folder: str | Path) -> None:
    """Make a folder's entries (a rename, a new file) durable. A no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the rename is then as durable as they allow
    finally:
        os.close(fd)


def fsync_tree(folder: str | Path) -> None:
    """fsync every file under `folder`, then every folder, deepest first."""
    folders = []
    for root, _, files in os.walk(folder):
        folders.append(root)
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for root in reversed(folders):
        fsync_dir(root)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Replace `path` by `data` all at once: temp file, fsync, rename, fsync of the folder."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`write_bytes_atomic` for text (UTF-8)."""
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, obj, **dumps) -> Path:
    """`obj` as JSON in `path`, atomically."""
    return write_text_atomic(path, json.dumps(obj, **{"indent": 2, **dumps}) + "\n")


def cut_torn_line(path: str | Path) -> int:
    """Cut a last line without its newline off a line-oriented file (its writer died mid-write); returns
    the number of bytes cut. Call before appending, so a new line never glues onto half of an old one."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        pos, chunk = size, 4096
        while pos > 0:  # find the last newline, reading backwards
            start = max(0, pos - chunk)
            f.seek(start)
            block = f.read(pos - start)
            nl = block.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return size - keep


def read_json_lines(path: str | Path) -> list[dict]:
    """The JSON objects of a line-oriented record; a line that does not parse (torn by a dead writer, or
    being written now) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_json_line(path: str | Path, row: dict) -> None:
    """Append one JSON object as a line, after cutting a torn last line; flushed and fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_torn_line(path)
    with open(path, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
