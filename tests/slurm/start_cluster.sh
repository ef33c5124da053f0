#!/usr/bin/env bash
# Start a one-node Slurm cluster with one (fake) GPU on this machine, for tests.
#   sudo tests/slurm/start_cluster.sh [STATE_DIR]      (default: /tmp/prodcat-slurm)
# Needs root and apt-get (Debian packages slurmctld slurmd slurm-client munge, installed if missing).
# Everything Slurm writes goes to STATE_DIR; tests/slurm/stop_cluster.sh STATE_DIR undoes it all.
# The GPU is a gres with File=/dev/null: Slurm counts and allocates it (so GPU jobs run one at a
# time and see CUDA_VISIBLE_DEVICES=0) but there is no card behind it.
# Prints `export SLURM_CONF=...` on success. Exit status 3: Slurm cannot be installed here;
# 4: another Slurm cluster or configuration is in the way; 1: anything else.
set -euo pipefail

STATE=$(realpath -m "${1:-/tmp/prodcat-slurm}")
CONF="$STATE/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf

CANNOT_INSTALL=3 IN_THE_WAY=4
die() { echo "start_cluster: $1" >&2; exit "${2:-1}"; }

[[ $(id -u) -eq 0 ]] || die "needs root (slurmd runs jobs as root here)" $CANNOT_INSTALL
grep -qsx slurmctld /proc/[0-9]*/comm \
    && die "a slurmctld is already running on this machine (stop it first)" $IN_THE_WAY

mkdir -p "$STATE"/{state,spool}

# --- packages -------------------------------------------------------------------------------
packages=(slurmctld slurmd slurm-client munge)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "needs apt-get to install ${missing[*]}" $CANNOT_INSTALL
    export DEBIAN_FRONTEND=noninteractive
    # Fresh containers ship without package lists.
    apt-get install -y --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 \
        || { apt-get update >>"$STATE/apt.log" 2>&1 \
             && apt-get install -y --no-install-recommends "${missing[@]}" >>"$STATE/apt.log" 2>&1; } \
        || die "apt-get install ${missing[*]} failed; see $STATE/apt.log" $CANNOT_INSTALL
fi

# --- munge (authentication between the Slurm daemons and clients) --------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    runuser -u munge -- munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null || die "munged does not answer"
    # stop_cluster.sh ends munged only if this script started it.
    cp /run/munge/munged.pid "$STATE/munged.pid"
    touch "$STATE/munged.started"
fi

# --- configuration ----------------------------------------------------------------------------
host=$(hostname -s)
# slurmd -C reports this machine's CPUs, sockets and RealMemory; a node line that claims more
# than the machine has is drained at registration.
node=$(slurmd -C | head -n 1)
[[ $node == NodeName=* ]] || die "slurmd -C gave no node line: $node"
node_name=${node%% *}
node_name=${node_name#NodeName=}
cat >"$CONF" <<EOF
ClusterName=prodcat
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without it a job that gives no --mem takes the whole node.
DefMemPerCPU=1000
# No accounting database: squeue is the job-state source (and scontrol the tests' record), so
# keep finished jobs visible for an hour.
MinJobAge=3600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# One line per finished job (its TRES, GPU included, and start/end times), for the tests.
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
ReturnToService=2
GresTypes=gpu
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
$node NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
# A second name for the same node, so a test can tell a chosen partition from the default.
PartitionName=extra Nodes=ALL Default=NO MaxTime=INFINITE State=UP
EOF
# A GPU gres without File= is dropped and the node goes INVAL.
cat >"$STATE/gres.conf" <<EOF
AutoDetect=off
NodeName=$node_name Name=gpu File=/dev/null
EOF

# The plugin's job step drops every SLURM_* variable (SLURM_CONF too) before its inner srun,
# so the configuration must also be where Slurm looks by default.
mkdir -p /etc/slurm
if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then
    :
elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
    die "$ETC_CONF exists and is not ours; refusing to replace it" $IN_THE_WAY
else
    ln -s "$CONF" "$ETC_CONF"
    touch "$STATE/etc_link.created"
fi

# --- daemons ----------------------------------------------------------------------------------
export SLURM_CONF=$CONF
slurmctld -f "$CONF"
slurmd -f "$CONF"
# Clients retry an absent controller for a long while: poll with a short timeout, and give up
# as soon as a daemon has died.
state=""
for _ in $(seq 60); do
    state=$(timeout 5 sinfo -h -o %T 2>/dev/null | sort -u || true)
    [[ $state == idle ]] && break
    for daemon in slurmctld slurmd; do
        if ! { [[ -s $STATE/$daemon.pid ]] && kill -0 "$(cat "$STATE/$daemon.pid")" 2>/dev/null; }; then
            state="$daemon died"
            break 2
        fi
    done
    sleep 1
done
if [[ $state != idle ]]; then
    tail -n 5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    "$(dirname "$0")/stop_cluster.sh" "$STATE"
    die "the node did not become idle (${state:-no answer}); see $STATE/slurmctld.log"
fi
echo "export SLURM_CONF=$CONF"
