#!/usr/bin/env bash
# Runs a command against a Slurm cluster of one machine, this one, made for the command and gone
# after it: its own munge daemon and key, a slurm.conf with this machine as the one node and its
# cores as CPUs, slurmctld and slurmd. Nothing goes to /etc or the system's munge: everything lives
# in a temporary directory, on ports of its own, so it can run beside anything else.
#
#   launch/slurm-local.sh -- COMMAND...
#
# COMMAND sees SLURM_CONF (which sbatch, squeue, scancel and friends read) and SLURM_LOCAL_DIR (the
# cluster's directory: logs, state). Example:
#
#   launch/slurm-local.sh -- sbatch --wait --nodes=1 --ntasks-per-node=2 \
#       launch/slurm.sbatch faces.vaeds runs/faces
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge (launch/setup.sh installs them). The daemons
# are stopped and the directory removed when the command ends, fails, or this script gets INT,
# TERM or HUP. Needs root: slurmd starts jobs as their user.
set -euo pipefail
[ "${1:-}" = -- ] && shift
(($#)) || { echo "slurm-local: no command given (after --)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "slurm-local: needs root (slurmd runs jobs as their users)" >&2; exit 1; }

command -v slurmctld >/dev/null && command -v munged >/dev/null \
    || { echo "slurm-local: slurmctld or munged not found; launch/setup.sh installs them" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/slurm-local.XXXX")
chmod 755 "$dir"
daemons=()
teardown() {
    trap '' INT TERM HUP
    # Jobs first (slurmd ends their processes), then the daemons, each by its own pid.
    [ -e "$dir/slurm.conf" ] && SLURM_CONF="$dir/slurm.conf" scancel --quiet --full --signal=KILL --user=root 2>/dev/null || true
    local pid
    for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${daemons[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap teardown EXIT
source "$(dirname "$0")/command-group.sh"

# A daemon started in the foreground (-F / -D) and in the background here, so that its pid is ours.
start() { "$@" >>"$dir/daemons.log" 2>&1 & daemons+=($!); }

# munge: a key and a socket of our own.
dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge.key"
mkdir -m 700 "$dir/munge"
start munged --foreground --force --key-file="$dir/munge.key" --socket="$dir/munge/socket" \
    --pid-file="$dir/munge/pid" --log-file="$dir/munge/log" --seed-file="$dir/munge/seed"
for _ in $(seq 50); do [ -S "$dir/munge/socket" ] && break; sleep 0.1; done
[ -S "$dir/munge/socket" ] || { echo "slurm-local: munged did not start: $(tail -n 1 "$dir/munge/log" 2>/dev/null)" >&2; exit 1; }

# Two free ports for slurmctld and slurmd.
free_port() {
    local port
    while :; do
        port=$(shuf -i 20000-59999 -n 1)
        ss -Htln "sport = :$port" | grep -q . || { echo "$port"; return; }
    done
}
node=$(hostname -s)
# This machine as slurmd sees it: CPUs, sockets, cores, threads, memory.
hardware=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]* //; s/ UpTime.*//")
mkdir "$dir/state" "$dir/spool"
cat >"$dir/slurm.conf" <<EOF
ClusterName=vaelocal
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
# cred_expire also holds a requeued job back (default 120 s): a preempted run resumes sooner.
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
# No cgroups in containers: processes are tracked by parentage, tasks bound by sched_setaffinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf" SLURM_LOCAL_DIR="$dir"
start slurmctld -D -i -f "$SLURM_CONF"
start slurmd -D -f "$SLURM_CONF"
ready=0
for _ in $(seq 100); do
    sinfo -h -N -o %t 2>/dev/null | grep -qx idle && { ready=1; break; }
    sleep 0.2
done
((ready)) || { echo "slurm-local: the node did not become idle; the daemons said:" >&2; tail -n 5 "$dir"/*.log >&2; exit 1; }
echo "slurm-local: cluster up: node $node ($hardware), partition local, $dir" >&2

run_command "$@"
exit "$command_status"
