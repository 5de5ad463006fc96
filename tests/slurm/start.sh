#!/usr/bin/env bash
# Start a one-node Slurm cluster with accounting on localhost: munged, MariaDB, slurmdbd, slurmctld, slurmd.
#
# Usage: start.sh RUN_DIR   (as root; RUN_DIR must be traversable by the munge user, e.g. mode 755)
# The daemons listen on localhost ports from SLURM_TEST_PORT_BASE (default 16800) + 6 to + 19.
#
# Everything lives under RUN_DIR; the only file outside it is the symlink /etc/slurm/slurm.conf, needed
# because the Snakemake Slurm plugin strips SLURM_CONF from the environment of job steps, so srun inside a
# job only finds the default path. Each daemon runs in the foreground in its own session and its PID is
# appended to RUN_DIR/pids before the next one starts, so stop.sh ends exactly these processes, also after
# a failed start. The node advertises 2 GPUs without device files and more memory than the machine has
# (SlurmdParameters=config_overrides): the real profile's `--gpus` and `--mem` requests are then accepted
# as written, while the test config runs on the CPU and nothing enforces memory (no cgroups).
# Its last line names the config clients need and the partition and account jobs may use:
#   SLURM_CONF=... SLURM_PARTITION=... SLURM_ACCOUNT=...
set -euo pipefail

run=$(realpath "$1")
ports=${SLURM_TEST_PORT_BASE:-16800}
ctld_port=$((ports + 17)) slurmd_port=$((ports + 18)) dbd_port=$((ports + 19)) db_port=$((ports + 6))
cluster=secretmoe account=secretmoe partition=debug
export SLURM_CONF=$run/slurm.conf

if [[ -e /etc/slurm/slurm.conf && ! -L /etc/slurm/slurm.conf ]]; then
    echo "refusing to replace the real /etc/slurm/slurm.conf of this host" >&2
    exit 3
fi

mkdir -p "$run"/{munge,mysql,state,spool,log}
: >"$run/pids"

# Start "$@" detached with output to log/NAME.log; record its PID.
daemon() {
    local name=$1
    shift
    setsid "$@" >"$run/log/$name.log" 2>&1 </dev/null &
    echo "$! $name" >>"$run/pids"
}

# Poll CONDITION (a command) every 0.2 s for up to SECONDS; on time-out show the log of NAME and fail.
wait_for() {
    local name=$1 seconds=$2
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$name did not come up within ${seconds}s; its log:" >&2
    tail -n 30 "$run/log/$name.log" >&2
    exit 1
}

# munge: its own key; the socket directory must be searchable by everyone or munged refuses to start.
mungekey --create --keyfile="$run/munge/munge.key" >/dev/null
chown -R munge:munge "$run/munge"
chmod 400 "$run/munge/munge.key"
chmod 711 "$run/munge"
socket=$run/munge/munge.socket.2
daemon munged setpriv --reuid=munge --regid=munge --init-groups munged -F --socket="$socket" --key-file="$run/munge/munge.key" \
    --pid-file="$run/munge/munged.pid" --seed-file="$run/munge/munged.seed" --log-file="$run/log/munged.log"
wait_for munged 10 munge -n --socket="$socket"

# MariaDB on 127.0.0.1 only, for slurmdbd.
mariadb-install-db --no-defaults --datadir="$run/mysql" --user=root --auth-root-authentication-method=socket \
    --skip-test-db >"$run/log/mariadb-install.log" 2>&1
daemon mariadb mariadbd --no-defaults --datadir="$run/mysql" --socket="$run/mysql.sock" --port="$db_port" \
    --bind-address=127.0.0.1 --skip-name-resolve --user=root --pid-file="$run/mysql.pid" --innodb-buffer-pool-size=32M
wait_for mariadb 30 mariadb-admin --socket="$run/mysql.sock" ping
mariadb --socket="$run/mysql.sock" -e "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

cat >"$run/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$socket
DbdHost=localhost
DbdPort=$dbd_port
SlurmUser=root
PidFile=$run/slurmdbd.pid
LogFile=$run/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$run/slurmdbd.conf"

cpus=$(nproc)
cat >"$run/slurm.conf" <<CONF
ClusterName=$cluster
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$run/state
SlurmdSpoolDir=$run/spool
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$run/log/slurmctld.log
SlurmdLogFile=$run/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
GresTypes=gpu
MailProg=/bin/true
ReturnToService=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStoragePass=$socket
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=256000 Gres=gpu:2 State=UNKNOWN
PartitionName=$partition Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
# slurmd drops GPUs without device files: two character devices with /dev/null's numbers stand in.
for i in 0 1; do [[ -e $run/gpu$i ]] || mknod "$run/gpu$i" c 1 3; done
echo "NodeName=localhost Name=gpu File=$run/gpu[0-1]" >"$run/gres.conf"
mkdir -p /etc/slurm
ln -sfn "$run/slurm.conf" /etc/slurm/slurm.conf

daemon slurmdbd slurmdbd -D
wait_for slurmdbd 20 sacctmgr -n list cluster
# Associations exist before slurmctld starts, so the enforced account check admits the test's jobs.
sacctmgr -i add cluster "$cluster" >/dev/null
sacctmgr -i add account "$account" cluster="$cluster" >/dev/null
sacctmgr -i add user root account="$account" cluster="$cluster" >/dev/null

daemon slurmctld slurmctld -D -i
wait_for slurmctld 20 bash -c 'scontrol ping | grep -q UP'
daemon slurmd slurmd -D -N localhost
wait_for slurmd 10 bash -c '[[ $(sinfo -h -N -o %T) == idle ]]'
echo "SLURM_CONF=$SLURM_CONF SLURM_PARTITION=$partition SLURM_ACCOUNT=$account"
