#!/usr/bin/env bash
# Stop the cluster that tests/slurm/start_cluster.sh STATE_DIR started and undo its changes:
# cancel its jobs, end slurmd, slurmctld (and munged, if that script started it) by the PIDs in
# their pid files, and remove the /etc/slurm/slurm.conf link if that script made it.
#   sudo tests/slurm/stop_cluster.sh [STATE_DIR]      (default: /tmp/prodcat-slurm)
# The packages stay installed; STATE_DIR stays for its logs (remove it yourself).
set -uo pipefail

STATE=$(realpath -m "${1:-/tmp/prodcat-slurm}")
CONF="$STATE/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf

# End the process named in a pid file and wait (up to 10 s) until it is gone.
stop_pid_file() {
    local pid_file=$1 pid
    [[ -s $pid_file ]] || return 0
    pid=$(cat "$pid_file")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    echo "stop_cluster: $pid ($pid_file) still runs after 10 s; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null
}

if [[ -s $STATE/slurmctld.pid ]] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    SLURM_CONF=$CONF scancel --full --quiet --user="$(id -un)" 2>/dev/null
fi
stop_pid_file "$STATE/slurmd.pid"
stop_pid_file "$STATE/slurmctld.pid"
if [[ -e $STATE/munged.started ]]; then
    stop_pid_file "$STATE/munged.pid"
    rm -f "$STATE/munged.started"
fi
if [[ -e $STATE/etc_link.created ]]; then
    [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]] && rm -f "$ETC_CONF"
    rmdir --ignore-fail-on-non-empty /etc/slurm 2>/dev/null
    rm -f "$STATE/etc_link.created"
fi
exit 0
