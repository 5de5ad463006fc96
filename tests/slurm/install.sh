#!/usr/bin/env bash
# Install what tests/slurm/start.sh needs for a one-node Slurm cluster with accounting (Debian 12 packages).
# Idempotent and quiet: does nothing when every package is already installed.
set -euo pipefail

packages=(munge slurmctld slurmd slurm-client slurmdbd slurm-wlm-mysql-plugin mariadb-server)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
