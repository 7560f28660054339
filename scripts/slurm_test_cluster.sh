#!/usr/bin/env bash
# A single-node SLURM cluster on localhost for the live-scheduler workflow test.
#
#   scripts/slurm_test_cluster.sh install        # as root: Debian's slurm-wlm + munge (apt)
#   scripts/slurm_test_cluster.sh start DIR      # munged, slurmctld, slurmd with their state under DIR
#   scripts/slurm_test_cluster.sh stop DIR       # stop the daemons started from DIR
#
# The node declares 16 CPUs, 128 GB and 4 stand-in GPUs (GRES backed by empty files, no devices) whatever the host has
# (SlurmdParameters=config_overrides), so the real workflow/profiles/slurm profile runs unchanged:
# its GPU requests are scheduled and show in the jobs' records. Partitions "cpu" and "gpu" match the
# profile. The cluster's slurm.conf is linked to /etc/slurm/slurm.conf while it runs (job steps read the
# default path); a real config there is never replaced. There is no accounting database: no account is set, and job status is read with squeue
# (MinJobAge keeps finished jobs visible for 2 hours).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"

need_dir() {
  if [[ -z "$dir" ]]; then
    echo "usage: $0 $cmd DIR" >&2
    exit 2
  fi
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
}

case "$cmd" in
  install)
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
      echo "[slurm] slurm-wlm and munge already installed"
      exit 0
    fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
      echo "[slurm] cannot install slurm-wlm/munge: needs root and apt-get" >&2
      exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
    echo "[slurm] installed $(slurmctld -V)"
    ;;
  start)
    need_dir
    host="$(hostname -s)"
    mkdir -p "$dir"/{state,log,munge,run,dev} "$dir/spool/slurmd-$host"
    touch "$dir"/dev/gpu{0,1,2,3}   # stand-in device files: GRES gpu needs one per GPU
    # munge: a private key and socket so nothing of the host's is touched
    if [[ ! -f "$dir/munge/munge.key" ]]; then
      dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
    fi
    chown -R munge:munge "$dir/munge" 2>/dev/null || true
    chmod 700 "$dir/munge"
    chmod 400 "$dir/munge/munge.key"
    munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" \
      --force
    cat >"$dir/slurm.conf" <<EOF
ClusterName=genosae-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/slurmd-%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MinJobAge=7200
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=16 RealMemory=128000 Gres=gpu:4 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    cat >"$dir/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu File=$dir/dev/gpu[0-3]
EOF
    # Job steps (the executor's `srun` inside each job) read the default /etc/slurm/slurm.conf: the
    # jobstep plugin drops SLURM_* variables. Link ours there unless a real cluster's config is in place.
    sys_conf=/etc/slurm/slurm.conf
    if [[ -e "$sys_conf" && ! -L "$sys_conf" ]]; then
      echo "[slurm] $sys_conf exists and is not a test cluster's link: refusing to replace it" >&2
      exit 4
    fi
    mkdir -p /etc/slurm
    ln -sfn "$dir/slurm.conf" "$sys_conf"
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$dir/slurm.conf"
    slurmd -f "$dir/slurm.conf"
    for _ in $(seq 60); do
      if sinfo -h -o "%t" 2>/dev/null | grep -qE "^(idle|mix|alloc)"; then
        echo "[slurm] cluster up: $(sinfo -h -o '%P %D %t %G' | tr '\n' ';')"
        exit 0
      fi
      sleep 1
    done
    echo "[slurm] node did not become idle; last log lines:" >&2
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
    ;;
  stop)
    need_dir
    for pidfile in "$dir"/run/slurmd-*.pid "$dir/run/slurmctld.pid" "$dir/munge/munged.pid"; do
      [[ -f "$pidfile" ]] || continue
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    done
    if [[ -L /etc/slurm/slurm.conf && "$(readlink /etc/slurm/slurm.conf)" == "$dir/slurm.conf" ]]; then
      rm -f /etc/slurm/slurm.conf
    fi
    echo "[slurm] stopped daemons of $dir"
    ;;
  *)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
