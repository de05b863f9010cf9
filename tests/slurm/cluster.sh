#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost (munge, slurmctld, slurmd), for `make test-slurm`.
#   tests/slurm/cluster.sh start STATE_DIR   install (as root, with apt) and start; writes pid files
#   tests/slurm/cluster.sh stop STATE_DIR    stop the daemons whose pid files STATE_DIR holds
# Only what `start` set up is undone: the daemons it launched, the config it wrote, and the
# packages it installed (with slurm's client present but no controller, every `scontrol`,
# which the SLURM executor plugin runs whenever Snakemake starts, waits 9 s for one).
# A cluster already answering on this machine is used as it is and left running (Debian's
# slurm reads the fixed /etc/slurm and /run/munge).
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop STATE_DIR}
state=$(mkdir -p "${2:?usage: cluster.sh start|stop STATE_DIR}" && cd "$2" && pwd)

say() { printf 'slurm-cluster: %s\n' "$*" >&2; }

PACKAGES="slurmctld slurmd slurm-client munge"

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sbatch >/dev/null && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "slurmctld, slurmd, munge and the slurm client are missing; install Debian's"
    say "slurmctld slurmd slurm-client munge (needs root and apt)"
    exit 3
  fi
  say "installing $PACKAGES"
  # Package scripts would start the services; this project starts its own daemons.
  local policy=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created=1; fi
  # shellcheck disable=SC2086
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends $PACKAGES >/dev/null; } || {
    if [ -n "$created" ]; then rm -f "$policy"; fi; say "apt-get could not install slurm"; exit 3; }
  if [ -n "$created" ]; then rm -f "$policy"; fi
  echo "$PACKAGES" > "$state/installed_packages"
}

write_config() {
  local mem cpus
  cpus=$(nproc)
  # Below the memory slurmd detects (MemTotal), or it drains the node.
  mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$state/ctld" "$state/slurmd" /etc/slurm
  : > "$state/wrote_config"
  [ -e "$state/gpu0" ] || mknod "$state/gpu0" c 1 3  # a stand-in device for the gpu gres
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=siblings-test
SlurmctldHost=localhost(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
MailProg=/bin/true
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=300
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
GresTypes=gpu
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  cat > /etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=$state/gpu0
CONF
  echo "$mem" > "$state/node_memory_mb"
  echo "$cpus" > "$state/node_cpus"
}

ready() { scontrol ping 2>/dev/null | grep -q UP && [ "$(sinfo -h -o %T 2>/dev/null)" = idle ]; }

start() {
  if command -v scontrol >/dev/null && ready; then
    say "a cluster already answers on this machine: using it, leaving it running"
    : > "$state/borrowed"
    return 0
  fi
  install_packages
  write_config
  install -d -o munge -g munge /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then  # no working munged yet
    runuser -u munge -- munged
    pgrep -u munge -x -n munged > "$state/munged.pid"  # munged cannot write into $state
  fi
  slurmctld -c
  slurmd -N localhost
  for _ in $(seq 100); do
    if ready && [ -s "$state/slurmctld.pid" ] && [ -s "$state/slurmd.pid" ]; then
      say "up: $(sinfo -h -o '%P %D %T %C')"; return 0
    fi
    sleep 0.2
  done
  say "the cluster did not come up; see $state/slurmctld.log and $state/slurmd.log"
  stop; exit 4
}

stop() {
  local name pid
  for name in slurmd slurmctld munged; do
    [ -s "$state/$name.pid" ] || continue
    pid=$(cat "$state/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$state/$name.pid"
  done
  if [ -e "$state/wrote_config" ]; then
    rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf "$state/wrote_config"
  fi
  if [ -s "$state/installed_packages" ]; then
    say "removing $(cat "$state/installed_packages")"
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq $(cat "$state/installed_packages") \
      >/dev/null 2>&1 || say "apt-get could not remove them"
    rm -f "$state/installed_packages"
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) say "unknown command '$cmd' (start or stop)"; exit 2 ;;
esac
