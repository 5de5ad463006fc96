"""Stores verified on read: what a finished Zarr store holds is recorded when it is finished and checked when it opens.

Zarr reads a missing chunk as the array's fill value (zeros) without a word, and a truncated one fails with the
codec's error (`RuntimeError: error during blosc decompression: -1`), naming neither store nor chunk.  So:

- `seal` runs when a store is finished (`store.finish_store`, `tokenise.write_token_store`).  It first writes any
  chunk Zarr left out (Zarr skips a chunk equal to the fill value: a chunk of `kind` holding text tokens only
  has no file), so every chunk of a finished store has a file, then records each chunk's size and CRC-32 in
  `manifest.json` inside the store.
- `find_damage` compares a store with its manifest: every chunk present with its recorded size (one `stat` per
  chunk, done on every open), and with `checksums` the CRC-32 of its bytes (one read of the files; its cost on
  the default store is in docs/robustness.md).  A store written before manifests is checked against its arrays'
  shapes instead: every chunk of its dense arrays present, and with `checksums` every chunk decoded.
- `check_store` raises `StoreDamagedError` naming the store, the array, the chunk (its rows) and the command
  that rebuilds it; `secret-moe verify` (`verify_stores`) lists the damage of every store of a run.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from secret_moe import __version__
from secret_moe.errors import SecretMoeError, StoreDamagedError
from secret_moe.layout import PATHS
from secret_moe.provenance import read_json, write_json

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
# Arrays no real chunk of which is all zeros (float activations, token ids and their offsets): only here does a
# missing chunk prove damage in a store written before manifests (Zarr skips writing a chunk equal to the fill
# value, so a chunk of `kind` holding text tokens only has no file there).
DENSE_ARRAYS = ("x", "y", "ids", "offsets")
# The rule that writes each kind of store (layout.PATHS), for the command that rebuilds a damaged one.
REBUILT_BY = {
    "tokens": "tokenise_corpus",
    "activations": "capture_activations",
    "gaussian": "sample_gaussian",
    "gaussian_draw": "sample_gaussian_draw",
}
SHOWN = 3  # damaged chunks named in an error message; the rest are counted


@dataclass(frozen=True)
class Damage:
    """One damaged file of a store: `file` is its path inside the store; for a chunk (`x/c/2/0`) `array` is its
    array and `rows` the rows it holds, for a metadata file (`zarr.json`, `x/zarr.json`) `rows` is None."""

    array: str | None
    file: str
    problem: str
    rows: tuple[int, int] | None = None

    def describe(self) -> str:
        if self.rows is None:
            whose = f"array {self.array!r}" if self.array else "the store"
            return f"file {self.file} (metadata of {whose}) {self.problem}"
        return f"array {self.array!r}, chunk {self.file} (rows {self.rows[0]:,}-{self.rows[1]:,}) {self.problem}"


@dataclass(frozen=True)
class Report:
    """What `find_damage` checked in one store and what it found."""

    path: Path
    chunks: int
    manifest: bool
    checksums: bool
    damage: list[Damage]
    seconds: float

    def summary(self) -> str:
        if self.manifest:
            how = "sizes and CRC-32 checked" if self.checksums else "sizes checked"
        else:
            how = "no manifest (written before manifests): the chunks of its dense arrays present" + (
                ", every chunk decoded" if self.checksums else ""
            )
        return f"{self.chunks} chunks, {how}"


def crc32_of(file: Path) -> int:
    return zlib.crc32(file.read_bytes())


def _array_names(group: zarr.Group) -> list[str]:
    """The group's arrays, sorted; the store's own files beside them (manifest.json, capture_stats.json) are not
    Zarr nodes, and Zarr warns of each when it lists the group."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component of a Zarr hierarchy")
        return sorted(group.array_keys())


def _chunk_grid(array: zarr.Array) -> Iterator[tuple[tuple[int, ...], str]]:
    """(chunk coordinates, key relative to the array) of every chunk of `array`, in order."""
    encoding = array.metadata.chunk_key_encoding
    for coords in itertools.product(*(range(n) for n in array.cdata_shape)):
        yield coords, encoding.encode_chunk_key(coords)


def _rows(coords: tuple[int, ...], chunks: Sequence[int], shape: Sequence[int]) -> tuple[int, int]:
    """The first and last row of the chunk at `coords`."""
    first = coords[0] * chunks[0]
    return first, min(first + chunks[0], shape[0]) - 1


def seal(path: str | Path) -> dict[str, Any]:
    """Write every chunk Zarr skipped and record the size and CRC-32 of each chunk and metadata file (zarr.json)
    in the store's manifest.json."""
    path = Path(path)
    group = zarr.open_group(str(path), mode="r+")
    arrays: dict[str, Any] = {}
    for name in _array_names(group):
        array = group[name].with_config({"write_empty_chunks": True})
        files = {}
        for coords, key in _chunk_grid(array):
            if not (path / name / key).is_file():  # all fill value, so Zarr wrote nothing; or lost since written
                if name in DENSE_ARRAYS:
                    rows = _rows(coords, array.chunks, array.shape)
                    log.warning("%s: chunk %s/%s (rows %d-%d) has no file: sealed as zeros", path, name, key, *rows)
                array.set_block_selection(coords, array.get_block_selection(coords))
            files[key] = _fingerprint(path / name / key)
        arrays[name] = {"shape": list(array.shape), "chunks": list(array.chunks), "chunk_files": files}
    metadata = {
        str(file.relative_to(path)): _fingerprint(file)
        for file in [path / "zarr.json", *(path / name / "zarr.json" for name in arrays)]
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "package_version": __version__,
        "checksum": "crc32",
        "metadata": metadata,
        "arrays": arrays,
    }
    write_json(path / MANIFEST_FILE, manifest)
    return manifest


def _fingerprint(file: Path) -> dict[str, int]:
    return {"bytes": file.stat().st_size, "crc32": crc32_of(file)}


def _file_damage(file: Path, recorded: dict[str, int], checksums: bool) -> str | None:
    """What is wrong with one file of a store, or None."""
    if not file.is_file():
        return "is missing"
    if (size := file.stat().st_size) != recorded["bytes"]:
        return f"has {size:,} bytes, {recorded['bytes']:,} were written"
    if checksums and crc32_of(file) != recorded["crc32"]:
        return "has other bytes than were written (CRC-32 differs)"
    return None


def _manifest_damage(path: Path, manifest: dict[str, Any], checksums: bool) -> tuple[int, list[Damage]]:
    found = [
        Damage(name.rpartition("/")[0] or None, name, problem)
        for name, recorded in manifest["metadata"].items()
        if (problem := _file_damage(path / name, recorded, checksums))
    ]
    count = 0
    for name, entry in manifest["arrays"].items():
        for key, recorded in entry["chunk_files"].items():
            count += 1
            if problem := _file_damage(path / name / key, recorded, checksums):
                rows = _rows(tuple(int(c) for c in re.findall(r"\d+", key)), entry["chunks"], entry["shape"])
                found.append(Damage(name, f"{name}/{key}", problem, rows))
    return count, found


def _legacy_damage(path: Path, checksums: bool) -> tuple[int, list[Damage]]:
    """A store without a manifest: chunks of the dense arrays present by shape; with `checksums` all decoded."""
    group = zarr.open_group(str(path), mode="r")
    found, count = [], 0
    for name in _array_names(group):
        array = group[name]
        for coords, key in _chunk_grid(array):
            count += 1
            rows = _rows(coords, array.chunks, array.shape)
            if name in DENSE_ARRAYS and not (path / name / key).is_file():
                found.append(Damage(name, f"{name}/{key}", "is missing", rows))
            elif checksums:
                try:
                    array.get_block_selection(coords)
                except Exception as error:  # the codec's own error, whatever its type: we name the chunk
                    found.append(
                        Damage(name, f"{name}/{key}", f"cannot be decoded ({type(error).__name__}: {error})", rows)
                    )
    return count, found


def find_damage(path: str | Path, *, checksums: bool = True) -> Report:
    """Check a finished store against its manifest (or, without one, its arrays' shapes); nothing is raised for
    damaged chunks, they are listed."""
    path, tick = Path(path), time.perf_counter()
    manifest_file = path / MANIFEST_FILE
    if manifest_file.is_file():
        try:
            manifest = read_json(manifest_file)
            if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"not a manifest of format {MANIFEST_FORMAT}")
            if not {"metadata", "arrays"} <= manifest.keys():
                raise ValueError("no metadata or arrays")
        except ValueError as error:
            damage = [Damage(None, MANIFEST_FILE, f"cannot be read ({error})")]
            return Report(path, 0, True, checksums, damage, time.perf_counter() - tick)
        count, damage = _manifest_damage(path, manifest, checksums)
        return Report(path, count, True, checksums, damage, time.perf_counter() - tick)
    count, damage = _legacy_damage(path, checksums)
    return Report(path, count, False, checksums, damage, time.perf_counter() - tick)


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def rebuild_command(path: str | Path) -> str:
    """How to rebuild the store at `path`: Snakemake forcing the job that wrote it (found from layout.PATHS)."""
    parts = Path(path).absolute().parts
    for kind, rule in REBUILT_BY.items():
        depth = len(Path(PATHS[kind]).parts)
        target = "/".join(parts[-depth:])
        if len(parts) > depth and _template_pattern(PATHS[kind]).fullmatch(target):
            workdir = Path(*parts[:-depth])
            where = "" if workdir == Path.cwd() else f" in {workdir}"
            return (
                f"`snakemake --cores 1 --force {target}` (rule {rule}){where}, with the run's --configfile; "
                "then rerun your target, which reruns what was made from this store"
            )
    return "the step that wrote it (delete the store and run it again)"


def damage_details(report: Report) -> str:
    """What is damaged in a store (the first few files, the rest counted) and the command that rebuilds it."""
    shown = "; ".join(d.describe() for d in report.damage[:SHOWN])
    more = len(report.damage) - SHOWN
    return (
        shown
        + (f"; and {more} more damaged file{'s' if more > 1 else ''}" if more > 0 else "")
        + f". Rebuild it: {rebuild_command(report.path)}"
    )


def check_store(path: str | Path, *, checksums: bool = True) -> Report:
    """`find_damage`, raising StoreDamagedError (store, array, chunk and the rebuild command) when it finds any."""
    report = find_damage(path, checksums=checksums)
    if report.damage:
        raise StoreDamagedError(f"store {str(path)!r} is damaged: {damage_details(report)}")
    log.info("store %s verified: %s in %.2f s", path, report.summary(), report.seconds)
    return report


def find_stores(root: str | Path) -> tuple[list[Path], list[Path]]:
    """(finished stores, unfinished `.partial` ones) at or under `root`: folders named *.zarr holding a zarr.json."""
    root = Path(root)
    if (root / "zarr.json").is_file():
        return ([], [root]) if root.name.endswith(".partial") else ([root], [])
    found = sorted(p for p in root.rglob("*.zarr*") if p.is_dir() and (p / "zarr.json").is_file())
    finished = [p for p in found if p.suffix == ".zarr"]
    return finished, [p for p in found if p.name.endswith(".zarr.partial")]


def verify(roots: Sequence[str | Path], write: Callable[[str], None]) -> int:
    """`secret-moe verify`: every finished store at or under `roots` checked in full (sizes and CRC-32s), one line
    each as it is checked; returns 0 when all are intact, 1 when any is damaged.  Trains nothing, writes nothing."""
    stores, unfinished = [], []
    for root in map(Path, roots):
        if not root.exists():
            raise SecretMoeError(f"{str(root)!r}: no such file or folder")
        finished, partial = find_stores(root)
        stores += finished
        unfinished += partial
    if not stores and not unfinished:
        raise SecretMoeError(f"no store (a *.zarr folder holding zarr.json) at or under {', '.join(map(str, roots))}")
    damaged = 0
    for store in stores:
        try:
            report = find_damage(store)
        except Exception as error:  # a store Zarr cannot even open (its zarr.json unreadable) is damaged too
            opened = f"cannot be opened ({type(error).__name__}: {error})"
            write(f"DAMAGED  {store}: {opened}. Rebuild it: {rebuild_command(store)}")
            damaged += 1
            continue
        if report.damage:
            write(f"DAMAGED  {store}: {damage_details(report)}")
            damaged += 1
        else:
            write(f"ok       {store} ({report.summary()}, {report.seconds:.2f} s)")
    for store in unfinished:
        write(f"partial  {store} (an interrupted job's store, not read by any step: Snakemake resumes it)")
    write(f"{len(stores)} finished store{'s' if len(stores) != 1 else ''} checked, {damaged} damaged")
    return 1 if damaged else 0
