"""What verifying a store costs on the default store, beside what its readers spend on it anyway.

A store of the default run's size (the Gemma-3-270M layer-9 train store: 100,058 rows x 640 float32 in x and y,
2 MiB chunks, the three row arrays of `rows.py`), random values, written through `store.create_store` and
`finish_store` (which seals it: `store_check.seal`), then timed: the seal; `open_store` checking sizes only and
sizes with CRC-32s; the same store without its manifest (a store written before manifests: chunks present by
shape, and every chunk decoded); against reading x and y whole (what the in-memory training load reads) and
`gaussian.fit_moments` (what fit_gaussian computes).  The files stay in the page cache (they were just written):
a cold disk adds its read time to the checksum and to every reader alike.

    python benchmarks/bench_store_check.py [--rows 100058] [--repeats 3] [--folder /tmp/bench_store_check]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import machine, save, table

D_MODEL = 640  # Gemma-3-270M's hidden size
CHUNK_MB = 2  # config.yaml capture.chunk_mb
BLOCK_ROWS = 16384  # config.yaml gaussian.block_rows


def make_store(final: Path, rows: int) -> float:
    """The store at `final`; returns the seconds its seal took."""
    from secret_moe.rows import ROW_ARRAYS
    from secret_moe.store import chunk_rows_for, commit_rows, create_store, partial_path
    from secret_moe.store_check import seal

    partial = partial_path(final)
    chunk_rows = chunk_rows_for(D_MODEL, CHUNK_MB)
    group = create_store(partial, rows, D_MODEL, chunk_rows, {"layer": 9}, ROW_ARRAYS)
    rng = np.random.default_rng(0)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        group["x"][start:stop] = rng.standard_normal((stop - start, D_MODEL), dtype=np.float32)
        group["y"][start:stop] = rng.standard_normal((stop - start, D_MODEL), dtype=np.float32)
        group["position"][start:stop] = np.arange(start, stop) % 128
        group["token_id"][start:stop] = rng.integers(0, 262144, stop - start)
        group["kind"][start:stop] = (np.arange(start, stop) % 128 == 0).astype(np.uint8)
    commit_rows(partial, rows)
    (partial / "progress.json").unlink()
    tick = time.perf_counter()
    seal(partial)
    sealed = time.perf_counter() - tick
    partial.rename(final)
    return sealed


def timed(action: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        tick = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - tick)
    return seconds


def main() -> None:
    from secret_moe.gaussian import fit_moments
    from secret_moe.store import open_store
    from secret_moe.store_check import MANIFEST_FILE, find_damage

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_058)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench_store_check"))
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    store = args.folder / "train.zarr"
    sealed = make_store(store, args.rows)
    size = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20
    opened = open_store(store, checksums=False)

    def read_whole() -> None:
        opened["x"][:], opened["y"][:]

    rows = [
        ["seal at finish_store (write skipped chunks, CRC-32 of every chunk)", [sealed]],
        ["open_store, sizes only (every open)", timed(lambda: open_store(store, checksums=False), args.repeats)],
        ["open_store, sizes and CRC-32 (readers of the rows)", timed(lambda: open_store(store), args.repeats)],
        ["read x and y whole (the in-memory training load)", timed(read_whole, args.repeats)],
        ["fit_moments on x (fit_gaussian)", timed(lambda: fit_moments(opened["x"], BLOCK_ROWS), 1)],
    ]
    (store / MANIFEST_FILE).rename(args.folder / MANIFEST_FILE)  # now a store written before manifests
    rows += [
        ["no manifest: chunks of x and y present", timed(lambda: find_damage(store, checksums=False), args.repeats)],
        ["no manifest: every chunk decoded", timed(lambda: find_damage(store), args.repeats)],
    ]
    header = (
        f"bench_store_check: {args.rows:,} rows x {D_MODEL} float32, {CHUNK_MB} MiB chunks, {size:,.0f} MiB on disk, "
        f"files in the page cache\n{machine()}\n"
    )
    body = table(
        ["what", "seconds (median)", "min", "runs"],
        [[what, f"{statistics.median(s):.3f}", f"{min(s):.3f}", len(s)] for what, s in rows],
    )
    save("bench_store_check", header + body)
    shutil.rmtree(args.folder)


if __name__ == "__main__":
    main()
