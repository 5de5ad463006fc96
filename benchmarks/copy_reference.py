"""Copy a finished run's tables and figures into a folder under reference/, the way the committed ones are made.

    python benchmarks/copy_reference.py RUN_DIR reference/verdict_run [--log TIMING_LOG]

Copies every table of `layout.RESULT_TABLES` except the per-epoch one (`curves`: large, rebuilt from the runs'
metrics; `runs` is kept: it alone holds every rung's FVU per student and seed, which a rule on the ladder reads),
every store's `rows_by_kind.csv`, and every figure under `figures/` (`figures/<model>/layer9/ladder.png` becomes
`<model>_layer9_ladder.png`), and every file of a `secret-moe scan` under `results/scan/`
(`results/scan/<model>/input_stats/layer3.csv` becomes `<model>_input_stats_layer3.csv`;
docs/scan.md). With `--log`, the timing lines
`benchmarks/time_default_run.sh` printed are copied to `timing.txt`, with the machine beside them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

LEFT_OUT = {"curves"}


def copy_reference(run: Path, dest: Path, log: Path | None) -> list[Path]:
    from secret_moe.layout import RESULT_TABLES, path

    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for table in RESULT_TABLES:
        source = run / path("table", name=table)
        if table not in LEFT_OUT and source.is_file():
            copied.append(Path(shutil.copy2(source, dest / source.name)))
    for rows in sorted((run / "results" / "activations").glob("*/layer*/*.zarr/rows_by_kind.csv")):
        model, split = rows.parts[-4], rows.parent.stem  # .../{model}/layer{layer}/{split}.zarr/rows_by_kind.csv
        copied.append(Path(shutil.copy2(rows, dest / f"rows_by_kind_{model}_{split}.csv")))
    scans = run / "results" / "scan"
    for table in sorted(p for p in scans.rglob("*") if p.is_file()) if scans.is_dir() else []:
        copied.append(Path(shutil.copy2(table, dest / "_".join(table.relative_to(scans).parts))))
    for figure in sorted((run / "figures").rglob("*.png")):
        name = "_".join(figure.relative_to(run / "figures").parts)
        copied.append(Path(shutil.copy2(figure, dest / name)))
    if log is not None:
        lines = [line for line in log.read_text().splitlines() if not line.startswith("WARNING")]
        (dest / "timing.txt").write_text("\n".join([*lines, f"machine: {machine()}"]) + "\n")
        copied.append(dest / "timing.txt")
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run's project folder (holds results/ and figures/)")
    parser.add_argument("dest", type=Path, help="e.g. reference/verdict_run")
    parser.add_argument("--log", type=Path, help="what benchmarks/time_default_run.sh printed")
    args = parser.parse_args()
    for path in copy_reference(args.run, args.dest, args.log):
        print(path)


if __name__ == "__main__":
    main()
