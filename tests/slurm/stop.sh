#!/usr/bin/env bash
# Stop the cluster that start.sh started in RUN_DIR: end each recorded PID, newest first, then drop the
# /etc/slurm/slurm.conf symlink if it still points into RUN_DIR.
#
# Usage: stop.sh RUN_DIR
set -uo pipefail

run=$(realpath "$1")

if [[ -f $run/pids ]]; then
    tac "$run/pids" | while read -r pid name; do
        kill -TERM "$pid" 2>/dev/null || continue
        # slurmdbd and MariaDB flush state on TERM; give each a few seconds before KILL
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && { echo "$name ($pid) ignored TERM; killing" >&2; kill -KILL "$pid"; }
    done
fi

if [[ $(readlink /etc/slurm/slurm.conf) == "$run/slurm.conf" ]]; then
    rm /etc/slurm/slurm.conf
fi
