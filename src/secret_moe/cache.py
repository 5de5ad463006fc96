"""This user's cache folder, `$XDG_CACHE_HOME/secret_moe` (else `~/.cache/secret_moe`), kept private.

What is cached there is run as code (the fused kernels' library, students/kernel_cache.py) or trusted as fact (a
GGUF model's shape, models/shape.py), so it must be a folder nobody else can write to: it is created 0700, and used
only while its owner is this user and neither its group nor others may write to it.  The check runs on the opened
folder and every file in it is opened through that descriptor (`/proc/self/fd/N` stands for the folder where a path
is needed), so the folder cannot be swapped for another between the check and the use.  Files are written to a
temporary name and renamed into place, owner-only (0600; a library 0700).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from secret_moe.errors import CacheError

log = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600
SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH


def cache_dir() -> Path:
    """Where this user's cache lives (it may not exist yet)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "secret_moe"


def not_private(status: os.stat_result) -> str | None:
    """Why a file or folder with this status is not private to this user, or None where it is."""
    if status.st_uid != os.geteuid():
        return f"it is owned by uid {status.st_uid}, not by this user (uid {os.geteuid()})"
    if status.st_mode & SHARED_WRITE:
        return f"its group or others may write to it (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


def fd_path(fd: int, fallback: Path) -> Path:
    """A path that opens what the descriptor `fd` holds (Linux's /proc/self/fd), else `fallback`."""
    proc = Path(f"/proc/self/fd/{fd}")
    return proc if proc.exists() else fallback


@contextmanager
def private_dir(folder: Path | None = None) -> Iterator[int]:
    """An open descriptor of the cache folder (created 0700 where missing), closed on exit; a CacheError naming the
    folder and what is wrong where it cannot be used or is not private to this user."""
    folder = cache_dir() if folder is None else folder
    try:
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        raise CacheError(f"cache folder {str(folder)!r} cannot be used ({error.strerror or error})") from error
    try:
        if (why := not_private(os.fstat(fd))) is not None:
            raise CacheError(
                f"cache folder {str(folder)!r} is not private: {why} (`chmod 700` a folder of your own, or set "
                "XDG_CACHE_HOME to another)"
            )
        yield fd
    finally:
        os.close(fd)


def open_private_file(folder_fd: int, name: str) -> int | None:
    """A read descriptor of the regular file `name` in the folder, or None where there is none; a CacheError where
    it is a link, not a regular file, or not private to this user."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: a symbolic link
        raise CacheError(f"cache file {name!r} cannot be opened as a file ({error.strerror or error})") from error
    status = os.fstat(fd)
    why = "it is not a regular file" if not stat.S_ISREG(status.st_mode) else not_private(status)
    if why is not None:
        os.close(fd)
        raise CacheError(f"cache file {name!r} is not private: {why}")
    return fd


def write_private_file(folder_fd: int, name: str, data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `name` in the folder, whole or not at all: a temporary name of this process, then a rename."""
    temporary = f".{name}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode, dir_fd=folder_fd)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        with os.fdopen(fd, "wb", closefd=False) as stream:
            stream.write(data)
    finally:
        os.close(fd)
    os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)


def read_json(name: str) -> dict[str, Any]:
    """The JSON object cached under `name`; empty where there is none, it is unreadable, or the cache is not
    private (then nothing is trusted from it)."""
    try:
        with private_dir() as folder:
            fd = open_private_file(folder, name)
            if fd is None:
                return {}
            with os.fdopen(fd, "rb") as stream:
                data = json.loads(stream.read())
    except (CacheError, OSError, ValueError) as error:
        log.info("not reading the cached %s: %s", name, error)
        return {}
    return data if isinstance(data, dict) else {}


def update_json(name: str, entries: dict[str, Any], keep: int = 1000) -> None:
    """Add `entries` to the JSON object cached under `name`, keeping the `keep` entries added last (nothing happens
    where the cache is not private)."""
    data = {key: value for key, value in read_json(name).items() if key not in entries} | entries
    try:
        with private_dir() as folder:
            write_private_file(folder, name, json.dumps(dict(list(data.items())[-keep:]), indent=1).encode())
    except (CacheError, OSError) as error:
        log.info("not caching %s: %s", name, error)
