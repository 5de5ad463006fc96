#!/usr/bin/env bash
# The default run (or another config's) from a clean clone, timed as README "Run" reports it:
# git clone, the README install, `snakemake --cores 2 figures/all`, then a dry run (must have nothing to do)
# and the HTML report. Run it on an otherwise idle machine.
#   bash benchmarks/time_default_run.sh [REPO] [WORKDIR] [CONFIG]
#   (defaults: this checkout, /tmp/secret-moe-default-run, no --configfile: config.yaml)
#   bash benchmarks/time_default_run.sh . /tmp/verdict-run config/verdict.yaml   # the decisive run
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
work=${2:-/tmp/secret-moe-default-run}
config=(${3:+--configfile "$3"})
rm -rf "$work"
git clone -q "$repo" "$work"
cd "$work"
date -u +"start %FT%TZ"
t0=$(date +%s)
python3 -m venv .venv
.venv/bin/pip install -q -r requirements.lock
.venv/bin/pip install -q --no-deps -e .
t1=$(date +%s)
echo "install_seconds $((t1 - t0))"
.venv/bin/snakemake --cores 2 figures/all "${config[@]}" > snakemake.log 2>&1
t2=$(date +%s)
echo "snakemake_seconds $((t2 - t1)) ($(grep -c '^Finished jobid' snakemake.log) jobs)"
.venv/bin/snakemake -n figures/all "${config[@]}" 2>&1 | tail -1
.venv/bin/snakemake --report report.html "${config[@]}" > report.log 2>&1 && echo "report: $work/report.html"
date -u +"end %FT%TZ"
