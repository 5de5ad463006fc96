"""The fused kernels' compiled library: built once into this user's private cache, verified before every load.

The library is `fused-<hash>.so` in the cache folder of secret_moe.cache (created 0700, refused unless this user
owns it and nobody else may write to it), beside its record `fused-<hash>.so.sha256` (`sha256sum` format), written
at build time.  A cached library is loaded only if it is a regular file of this user that nobody else may write to
and its bytes hash to its record; it is hashed and loaded through the same open descriptor, so the file checked is
the file loaded.  Anything else (no record: a file this package did not build, e.g. one planted under the name,
which is computable from public inputs; a record that disagrees: a truncated, corrupted or replaced file) is
rebuilt in its place.  A build compiles in a fresh private temporary folder (mkdtemp: 0700) and is then stored in
the cache.  Where the folder itself is refused (another owner, writable by others, not creatable), the build is not
stored: it serves this process only, after one warning: the same kernels, one more compile (about 3 s).

The record lives in the same folder as the library: the folder is private, so whoever could rewrite the record
could rewrite the library too, and would be this user.  What it adds is that a library whose bytes are not those
this package built (cut short by a full disk, corrupted, copied in by hand or by another tool) is never loaded.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from secret_moe.cache import cache_dir, fd_path, open_private_file, private_dir, write_private_file
from secret_moe.errors import CacheError

log = logging.getLogger(__name__)

LIBRARY_MODE = 0o700
RECORD_SUFFIX = ".sha256"


def library_name(source: Path, compiler: list[str], flags: list[str], version: str, machine: str) -> str:
    """The cached library's file name: a hash of the source, the compiler, its flags and version, and the machine."""
    key = hashlib.sha256("\0".join([source.read_text(), *compiler, *flags, version, machine]).encode())
    return f"fused-{key.hexdigest()[:16]}.so"


def _record(digest: str, name: str) -> bytes:
    return f"{digest}  {name}\n".encode()


def _load_verified(folder: int, name: str) -> ctypes.CDLL | None:
    """The cached library `name`, if it is private to this user and its bytes hash to its record; else None."""
    try:
        fd = open_private_file(folder, name)
    except CacheError as error:
        log.warning("fused CPU kernels: not loading the cached library (%s); rebuilding it", error)
        return None
    if fd is None:
        return None
    try:
        with os.fdopen(os.dup(fd), "rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        record_fd = open_private_file(folder, name + RECORD_SUFFIX)
        if record_fd is None:
            log.info("fused CPU kernels: %s has no SHA-256 record (not built here); rebuilding it", name)
            return None
        with os.fdopen(record_fd, "rb") as stream:
            recorded = stream.read()
        if recorded != _record(digest, name):
            log.warning("fused CPU kernels: %s does not match its SHA-256 record; rebuilding it", name)
            return None
        return ctypes.CDLL(str(fd_path(fd, cache_dir() / name)))  # the descriptor hashed above, not the name again
    except CacheError as error:
        log.warning("fused CPU kernels: not loading the cached library (%s); rebuilding it", error)
        return None
    finally:
        os.close(fd)


def _compile(source: Path, compiler: list[str], flags: list[str], out: Path) -> None:
    proc = subprocess.run([*compiler, *flags, str(source), "-o", str(out)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(compiler)} failed: {(proc.stderr.strip().splitlines() or ['?'])[0]}")
    os.chmod(out, LIBRARY_MODE)


def _build(name: str, source: Path, compiler: list[str], flags: list[str], folder: int | None) -> ctypes.CDLL:
    """Compile in a fresh private temporary folder (mkdtemp: 0700), then, where there is a cache `folder`, store the
    library and its record there and load it through the same verification as a cached one (concurrent jobs each
    build apart; the last rename wins); else, or if that fails, load the temporary build (it stays mapped once the
    folder is removed)."""
    tmp = tempfile.mkdtemp(prefix="secret_moe-kernels-")
    try:
        out = Path(tmp) / name
        _compile(source, compiler, flags, out)
        if folder is not None:
            data = out.read_bytes()
            try:  # the record last: a library without one is never loaded
                write_private_file(folder, name, data, LIBRARY_MODE)
                write_private_file(folder, name + RECORD_SUFFIX, _record(hashlib.sha256(data).hexdigest(), name))
            except OSError as error:
                log.warning("fused CPU kernels: built, but not cached (%s)", error)
            else:
                if (library := _load_verified(folder, name)) is not None:
                    log.info("fused CPU kernels: built %s", cache_dir() / name)
                    return library
        return ctypes.CDLL(str(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_library(source: Path, compiler: list[str], flags: list[str], version: str, machine: str) -> ctypes.CDLL:
    """The compiled kernels: the verified cached library, else a fresh build (cached where the cache is private)."""
    name = library_name(source, compiler, flags, version, machine)
    try:
        with private_dir() as folder:
            cached = _load_verified(folder, name)
            return cached if cached is not None else _build(name, source, compiler, flags, folder)
    except CacheError as error:
        log.warning("fused CPU kernels: %s; building them in a private temporary folder for this process", error)
    return _build(name, source, compiler, flags, None)
