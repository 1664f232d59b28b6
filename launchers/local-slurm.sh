#!/usr/bin/env bash
# local-slurm.sh: a real single-node SLURM cluster on localhost (Debian 12, as root), for trying
# mupbench's SLURM launcher profiles on one machine and for its `slurm` tests (.ci/run).
#
#   PART=$(launchers/local-slurm.sh up)
#   trap 'launchers/local-slurm.sh down' EXIT
#   mupbench-train -m +experiment=mlp_california_quick hydra/launcher=slurm \
#     hydra.launcher.partition=$PART hydra.launcher.gpus_per_node=0 hydra.launcher.cpus_per_task=1 \
#     hydra.launcher.mem_gb=1
#
#   local-slurm.sh up      install (if missing), configure, start munged [+ mariadbd + slurmdbd]
#                          + slurmctld + slurmd, wait until the node is idle, then print the
#                          default partition name on stdout (all logs go to stderr).
#   local-slurm.sh down    cancel the cluster's jobs, then stop the daemons this script started,
#                          by the PIDs it recorded in /run/local-slurm/*.pid, and see them reaped:
#                          they are children of local-slurm-keeper.py (a subreaper), which waits
#                          for them, so no defunct entries remain where PID 1 does not reap.
#   local-slurm.sh status  show what is recorded and running.
#
# Both up and down are idempotent: running up again when the cluster is healthy changes nothing,
# and running up after a config change restarts only the daemons this script started.
#
# Environment (all optional):
#   LOCAL_SLURM_ACCOUNTING  slurmdbd (default: MariaDB + slurmdbd, real sacct) | none
#   LOCAL_SLURM_PARTITION   default partition name (default: debug). "<name>_high" preempts it.
#   LOCAL_SLURM_CLUSTER     ClusterName (default: localci)
#   LOCAL_SLURM_GRACE       GraceTime in s between preemption signal and kill (default: 30)
#   LOCAL_SLURM_TIMEOUT     overall deadline for `up` in seconds, apt included (default: 300)
#   LOCAL_SLURM_CGROUP=1    use cgroup proctrack/task plugins (CPU pinning, memory limits enforced);
#                           default 0: proctrack/linuxproc + task/none, which need no cgroups
#   LOCAL_SLURM_GPUS=N      N>0: advertise N fake GPUs (gres/gpu backed by stand-in devices under
#                           /var/lib/slurm/fake-gpu) so gpus_per_node>0 jobs schedule; default 0
#   LOCAL_SLURM_FRESH=1     wipe controller state + accounting DB before starting (job ids restart)
set -euo pipefail

PARTITION=${LOCAL_SLURM_PARTITION:-debug}
CLUSTER=${LOCAL_SLURM_CLUSTER:-localci}
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-slurmdbd}
GRACE=${LOCAL_SLURM_GRACE:-30}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-300}
FRESH=${LOCAL_SLURM_FRESH:-0}
CGROUP=${LOCAL_SLURM_CGROUP:-0}
GPUS=${LOCAL_SLURM_GPUS:-0}
FAKE_GPU_DIR=/var/lib/slurm/fake-gpu

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATES=$HERE/slurm-conf           # slurm.conf.in, slurmdbd.conf.in, cgroup.conf.in
RUN=/run/local-slurm                  # our PID records + lock
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
STATE=/var/lib/slurm/slurmctld
DBNAME=local_slurm_acct_db
DBPASS=local-slurm-ci                 # local throwaway DB on loopback/socket only
MARKER="# managed by local-slurm.sh"
APT_LOG=/var/log/local-slurm-apt.log
MARIADB_LOG=/var/log/local-slurm-mariadb.log
START_LOG=/var/log/local-slurm-daemons.log   # stdout/stderr of the daemon start commands
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "[local-slurm $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
START=$(date +%s)
left() { local l=$((TIMEOUT - ($(date +%s) - START))); [ "$l" -gt 0 ] && echo "$l" || echo 1; }

# wait_for DESCRIPTION MAX_SECONDS COMMAND...: poll every 0.5 s, bounded by MAX and the deadline.
wait_for() {
  local what=$1 max=$2; shift 2
  local l; l=$(left); [ "$l" -lt "$max" ] && max=$l
  local end=$(( $(date +%s) + (max > 0 ? max : 1) ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "timed out after ${max}s waiting for: $what"
  return 1
}

# pid_alive PIDFILE COMM: true if PIDFILE names a live (not zombie) process whose comm is COMM.
pid_alive() {
  local f=$1 comm=$2 pid
  [ -s "$f" ] || return 1
  pid=$(tr -dc '0-9' <"$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# record NAME PIDFILE COMM: copy a daemon's pid (from its own pid file) into our records.
record() {
  local name=$1 f=$2 comm=$3
  wait_for "$comm pid file $f" 20 pid_alive "$f" "$comm" ||
    { tail -5 "$START_LOG" >&2 2>/dev/null; die "$comm did not start (see $START_LOG, /var/log/slurm)"; }
  tr -dc '0-9' <"$f" >"$RUN/$name.pid"
  echo "$comm" >"$RUN/$name.comm"
  log "started $comm pid $(cat "$RUN/$name.pid")"
}

ours() { [ -s "$RUN/$1.pid" ] && pid_alive "$RUN/$1.pid" "$(cat "$RUN/$1.comm" 2>/dev/null)"; }

# ---------------------------------------------------------------- keeper
# The daemons are started by the keeper (local-slurm-keeper.py), a child subreaper that reaps
# them when they stop. Without it their parent is PID 1, and where PID 1 does not reap (a
# container's agent) every stopped daemon stayed a defunct entry.
KEEPER=$HERE/local-slurm-keeper.py
KDIR=$RUN/keeper
keeper_alive() {
  local pid
  [ -s "$RUN/keeper.pid" ] || return 1
  pid=$(cat "$RUN/keeper.pid")
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$KEEPER" &&
    ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

ensure_keeper() {
  keeper_alive && return 0
  command -v python3 >/dev/null || die "python3 is needed for the keeper ($KEEPER)"
  mkdir -p "$KDIR"; rm -f "$KDIR"/*
  setsid python3 "$KEEPER" "$KDIR" </dev/null >>"$START_LOG" 2>&1 9>&- &
  echo $! >"$RUN/keeper.pid"
  wait_for "keeper pid $(cat "$RUN/keeper.pid")" 10 keeper_alive || die "the keeper did not start (see $START_LOG)"
  log "started keeper pid $(cat "$RUN/keeper.pid") (the daemons' parent: it reaps them)"
}

# keeper_run wait|bg LOGFILE ARGV...: start a command as the keeper's child; its exit status
# (wait: the command daemonizes itself and returns), or 0 once started (bg: a foreground daemon).
keeper_run() {
  ensure_keeper
  local mode=$1 logfile=$2 n; shift 2
  n=$(date +%s%N)
  printf '%s\0' "$mode" "$logfile" "$@" | head -c -1 >"$KDIR/$n.tmp"
  mv "$KDIR/$n.tmp" "$KDIR/$n.req"
  wait_for "the keeper to start $1" 60 test -s "$KDIR/$n.rc" || return 1
  local rc; rc=$(cat "$KDIR/$n.rc"); rm -f "$KDIR/$n.rc"
  return "$rc"
}

# gone PID: true once PID has left the process table (exited and reaped).
gone() { [ ! -e "/proc/$1" ]; }

# A real init reaps orphans itself; there the keeper stops with `down`.
pid1_reaps() { case "$(cat /proc/1/comm 2>/dev/null)" in systemd|init|tini|dumb-init|catatonit|docker-init|s6-svscan|runit) return 0;; esac; return 1; }

stop_keeper() {
  keeper_alive || return 0
  if pid1_reaps; then
    : >"$KDIR/stop"
    wait_for "the keeper to exit" 10 sh -c "! kill -0 $(cat "$RUN/keeper.pid") 2>/dev/null" || true
    rm -f "$RUN/keeper.pid"; log "keeper stopped"
  else
    log "keeper pid $(cat "$RUN/keeper.pid") stays, idle: PID 1 ($(cat /proc/1/comm)) does not reap, so it would be left defunct"
  fi
}

need_root() { [ "$(id -u)" = 0 ] || die "run as root"; }

# ---------------------------------------------------------------- install
pkgs() {
  local p="munge slurm-client slurmctld slurmd"
  [ "$ACCOUNTING" = slurmdbd ] && p="$p slurmdbd mariadb-server mariadb-client"
  echo "$p"
}

install_pkgs() {
  local missing=() p
  for p in $(pkgs); do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { log "packages present: $(pkgs)"; return 0; }
  log "installing: ${missing[*]} (log: $APT_LOG)"
  local try
  for try in 1 2 3; do
    if timeout "$(left)" apt-get -o DPkg::Lock::Timeout=60 update >>"$APT_LOG" 2>&1 &&
       DEBIAN_FRONTEND=noninteractive timeout "$(left)" apt-get -o DPkg::Lock::Timeout=60 \
         install -y --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1; then
      log "installed (try $try)"; return 0
    fi
    log "apt attempt $try failed"; tail -5 "$APT_LOG" >&2 || true; sleep 3
  done
  die "apt-get install failed"
}

# ---------------------------------------------------------------- config
render_conf() {
  local host=$1 hw acct
  # e.g. "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hw=$(slurmd -C 2>/dev/null | sed -n -E '1s/^NodeName=[^ ]+ //p')
  [ -n "$hw" ] || die "slurmd -C gave no hardware line"
  acct=accounting_storage/none
  [ "$ACCOUNTING" = slurmdbd ] && acct=accounting_storage/slurmdbd
  local proctrack=proctrack/linuxproc taskplugin=task/none
  if [ "$CGROUP" = 1 ]; then proctrack=proctrack/cgroup; taskplugin=task/cgroup,task/affinity; fi
  local gres_types="# (no GRES: LOCAL_SLURM_GPUS=0)" node_gres=""
  if [ "$GPUS" -gt 0 ]; then
    gres_types="GresTypes=gpu\nAccountingStorageTRES=gres/gpu"; node_gres=" Gres=gpu:$GPUS"
  fi
  { echo "$MARKER (template: slurm.conf.in)"
    sed -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$host|g" -e "s|@NODE_HW@|$hw|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@ACCT_TYPE@|$acct|g" -e "s|@GRACE@|$GRACE|g" \
        -e "s|@PROCTRACK@|$proctrack|g" -e "s|@TASKPLUGIN@|$taskplugin|g" \
        -e "s|@GRES_TYPES@|$gres_types|g" -e "s|@NODE_GRES@|$node_gres|g" \
        "$TEMPLATES/slurm.conf.in"
  }
}

# Fake GPUs: Slurm's gpu GRES needs a File= per GPU that is a character device. Stand-ins with
# the major/minor of /dev/null satisfy that; nothing ever opens them.
render_gres_conf() {
  local host=$1 i
  mkdir -p "$FAKE_GPU_DIR"
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$FAKE_GPU_DIR/gpu$i" ] || mknod -m 0666 "$FAKE_GPU_DIR/gpu$i" c 1 3
  done
  echo "$MARKER (fake GPUs for CI: LOCAL_SLURM_GPUS=$GPUS; not real devices)"
  echo "NodeName=$host Name=gpu File=$FAKE_GPU_DIR/gpu[0-$((GPUS - 1))]"
}

render_cgroup_conf() {
  echo "$MARKER (template: cgroup.conf.in)"
  cat "$TEMPLATES/cgroup.conf.in"
}

render_dbd_conf() {
  echo "$MARKER (template: slurmdbd.conf.in)"
  sed -e "s|@DBNAME@|$DBNAME|g" -e "s|@DBPASS@|$DBPASS|g" "$TEMPLATES/slurmdbd.conf.in"
}

# install_file SRC DEST MODE: returns 0 if DEST changed.
install_file() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest"; then rm -f "$src"; return 1; fi
  if [ -f "$dest" ] && ! head -1 "$dest" | grep -qF "$MARKER"; then
    cp -p "$dest" "$dest.before-local-slurm"; log "backed up existing $dest"
  fi
  install -m "$mode" "$src" "$dest"; rm -f "$src"; log "wrote $dest"
  return 0
}

ensure_host() {
  local host=$1
  if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" >>/etc/hosts; log "added '$host' to /etc/hosts"
  fi
}

# ---------------------------------------------------------------- daemons
start_munge() {
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge; chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key; log "created munge key"
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    if ours munged; then log "munged running (ours)"; else log "munged already running (not ours, reused)"; fi
    return 0
  fi
  rm -f /run/munge/munged.pid
  keeper_run wait "$START_LOG" /usr/bin/setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged ||
    die "munged did not start (see $START_LOG)"
  record munged /run/munge/munged.pid munged
  wait_for "munge round trip" 20 sh -c 'munge -n | unmunge' || die "munge does not work"
}

mysql_ok() { mariadb-admin --socket=/run/mysqld/mysqld.sock ping; }

start_mariadb() {
  mkdir -p /run/mysqld; chown mysql:root /run/mysqld
  if mysql_ok >/dev/null 2>&1; then
    if ours mariadbd; then log "mariadbd running (ours)"; else log "mariadbd already running (not ours, reused)"; fi
  else
    if [ ! -d /var/lib/mysql/mysql ]; then
      log "initialising /var/lib/mysql"
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >>"$MARIADB_LOG" 2>&1
    fi
    rm -f /run/mysqld/mysqld.pid
    # Unix socket only (no TCP port); small buffer pool: this DB holds a few job records.
    keeper_run bg "$MARIADB_LOG" /usr/sbin/mariadbd --user=mysql --datadir=/var/lib/mysql --skip-networking \
      --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
      --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 || die "mariadbd did not start (see $MARIADB_LOG)"
    record mariadbd /run/mysqld/mysqld.pid mariadbd
    wait_for "mariadb ping" 60 mysql_ok || die "mariadbd not answering (see $MARIADB_LOG)"
  fi
  local drop=""
  if [ "$FRESH" = 1 ] || { ! pid_alive /run/slurmctld.pid slurmctld && [ ! -s "$STATE/job_state" ]; }; then
    # slurmctld is about to start from empty state, so job ids restart at 1. Drop the old
    # accounting records so sacct cannot mix an old job 1 up with the new one (submitit would
    # read the wrong state). A running slurmctld may simply not have saved its state yet.
    drop="DROP DATABASE IF EXISTS $DBNAME;"
    log "fresh controller state: resetting accounting DB $DBNAME"
  fi
  mariadb --socket=/run/mysqld/mysqld.sock -e "$drop
    CREATE DATABASE IF NOT EXISTS $DBNAME;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON $DBNAME.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
}

start_slurmdbd() {
  if pid_alive /run/slurmdbd.pid slurmdbd; then
    ours slurmdbd || die "a slurmdbd not started by this script is running; stop it first"
    log "slurmdbd running (ours)"
  else
    rm -f /run/slurmdbd.pid
    keeper_run wait "$START_LOG" /usr/sbin/slurmdbd || die "slurmdbd did not start (see $START_LOG)"
    record slurmdbd /run/slurmdbd.pid slurmdbd
  fi
  wait_for "slurmdbd answering sacctmgr" 60 sacctmgr -n -P list cluster ||
    { tail -20 /var/log/slurm/slurmdbd.log >&2; die "slurmdbd not answering"; }
}

start_slurm_daemon() {   # start_slurm_daemon NAME
  local name=$1
  if pid_alive "/run/$name.pid" "$name"; then
    ours "$name" || die "a $name not started by this script is running (systemd?); stop it first"
    log "$name running (ours)"; return 0
  fi
  rm -f "/run/$name.pid"
  # Daemonizes itself, as the keeper's child: it never inherits our stdout (a caller's $(...)
  # would hang) or fd 9 (the lock), and it is reaped when it stops.
  keeper_run wait "$START_LOG" "/usr/sbin/$name" || die "$name did not start (see $START_LOG)"
  record "$name" "/run/$name.pid" "$name"
}

node_state() { sinfo -h -n "$1" -o '%T' 2>/dev/null | sed -n 1p; }
node_ready() { case "$(node_state "$1")" in idle|mixed|allocated|completing) return 0;; esac; return 1; }

# ---------------------------------------------------------------- stop
stop_one() {   # stop_one NAME: TERM, wait up to 20 s, then KILL; only the PID we recorded.
  local name=$1 pid comm i
  [ -s "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid"); comm=$(cat "$RUN/$name.comm" 2>/dev/null || echo "$name")
  if pid_alive "$RUN/$name.pid" "$comm"; then
    log "stopping $comm pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do pid_alive "$RUN/$name.pid" "$comm" || break; sleep 0.2; done
    if pid_alive "$RUN/$name.pid" "$comm"; then
      log "$comm pid $pid ignored TERM, sending KILL"; kill -KILL "$pid" 2>/dev/null || true; sleep 0.5
    fi
    # reaped by the keeper (its parent) the moment it exits; a defunct entry means another parent
    for i in $(seq 1 50); do gone "$pid" && break; sleep 0.1; done
    gone "$pid" || log "WARNING: $comm pid $pid is stopped but not reaped (parent $(awk '/^PPid/{print $2}' "/proc/$pid/status" 2>/dev/null))"
  else
    log "$name (pid $pid) was not running"
  fi
  rm -f "$RUN/$name.pid" "$RUN/$name.comm"
}

cancel_jobs() {
  ours slurmctld || return 0
  local ids
  ids=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ') || true
  [ -n "${ids// /}" ] || return 0
  log "cancelling jobs: $ids"
  # shellcheck disable=SC2086
  scancel $ids 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    [ -z "$(squeue -h -o '%A' 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  log "some jobs still listed after 30 s: $(squeue -h -o '%A %T' | tr '\n' ';')"
}

do_down() {
  need_root
  mkdir -p "$RUN"
  cancel_jobs
  local n
  for n in slurmd slurmctld slurmdbd mariadbd munged; do stop_one "$n"; done
  stop_keeper
  log "down"
}

# ---------------------------------------------------------------- up
do_up() {
  need_root
  case "$ACCOUNTING" in slurmdbd|none) ;; *) die "LOCAL_SLURM_ACCOUNTING must be slurmdbd or none";; esac
  case "$CGROUP" in 0|1) ;; *) die "LOCAL_SLURM_CGROUP must be 0 or 1";; esac
  case "$GPUS" in ''|*[!0-9]*) die "LOCAL_SLURM_GPUS must be a number";; esac
  mkdir -p "$RUN"
  exec 9>"$RUN/lock"
  flock -w 60 9 || die "another local-slurm.sh holds $RUN/lock"
  [ -f "$TEMPLATES/slurm.conf.in" ] || die "template $TEMPLATES/slurm.conf.in missing"

  install_pkgs
  local host; host=$(hostname -s)
  ensure_host "$host"

  # Render configs; restart our daemons if anything changed.
  local changed=0 tmp
  tmp=$(mktemp); render_conf "$host" >"$tmp"
  install_file "$tmp" "$CONF" 0644 && changed=1
  if [ "$ACCOUNTING" = slurmdbd ]; then
    tmp=$(mktemp); render_dbd_conf >"$tmp"
    install_file "$tmp" "$DBD_CONF" 0600 && changed=1
  fi
  if [ "$CGROUP" = 1 ]; then
    tmp=$(mktemp); render_cgroup_conf >"$tmp"
    install_file "$tmp" /etc/slurm/cgroup.conf 0644 && changed=1
  fi
  if [ "$GPUS" -gt 0 ]; then
    tmp=$(mktemp); render_gres_conf "$host" >"$tmp"
    install_file "$tmp" /etc/slurm/gres.conf 0644 && changed=1
  elif [ -f /etc/slurm/gres.conf ] && head -1 /etc/slurm/gres.conf | grep -qF "$MARKER"; then
    rm -f /etc/slurm/gres.conf; changed=1; log "removed our /etc/slurm/gres.conf"
  fi
  if [ "$changed" = 1 ] && { ours slurmctld || ours slurmd || ours slurmdbd; }; then
    log "config changed: restarting slurm daemons"
    cancel_jobs
    stop_one slurmd; stop_one slurmctld; stop_one slurmdbd
  fi
  if [ "$ACCOUNTING" = none ]; then stop_one slurmdbd; stop_one mariadbd; fi
  if [ "$FRESH" = 1 ]; then
    ours slurmctld && die "LOCAL_SLURM_FRESH=1 needs the cluster down first"
    log "LOCAL_SLURM_FRESH=1: wiping $STATE"; rm -rf "${STATE:?}"/*
  fi
  mkdir -p "$STATE" /var/lib/slurm/slurmd /var/log/slurm

  start_munge
  if [ "$ACCOUNTING" = slurmdbd ]; then start_mariadb; start_slurmdbd; fi
  start_slurm_daemon slurmctld
  wait_for "slurmctld answering" 60 scontrol ping ||
    { tail -20 /var/log/slurm/slurmctld.log >&2; die "slurmctld not answering"; }
  start_slurm_daemon slurmd

  if ! wait_for "node $host idle" 60 node_ready "$host"; then
    log "node state: $(node_state "$host"); trying to resume it"
    scontrol update nodename="$host" state=resume 2>/dev/null || true
    wait_for "node $host idle after resume" 30 node_ready "$host" ||
      { sinfo -R >&2; tail -20 /var/log/slurm/slurmd.log >&2; die "node never became ready"; }
  fi
  if [ "$ACCOUNTING" = slurmdbd ]; then
    wait_for "cluster $CLUSTER registered in slurmdbd" 30 \
      sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx '$CLUSTER'" ||
      log "WARNING: cluster not registered in slurmdbd yet; sacct may be empty"
  fi
  log "up in $(( $(date +%s) - START ))s: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ';')"
  echo "$PARTITION"
}

do_status() {
  local n
  for n in munged mariadbd slurmdbd slurmctld slurmd; do
    if ours "$n"; then echo "$n: running, pid $(cat "$RUN/$n.pid") (started by local-slurm.sh)"
    elif [ -s "$RUN/$n.pid" ]; then echo "$n: recorded pid $(cat "$RUN/$n.pid") is gone"
    else echo "$n: not started by local-slurm.sh"; fi
  done
  if keeper_alive; then echo "keeper: running, pid $(cat "$RUN/keeper.pid") (the daemons' parent)"; else echo "keeper: not running"; fi
  if command -v sinfo >/dev/null && scontrol ping >/dev/null 2>&1; then sinfo; squeue; fi
}

case "${1:-}" in
  up) do_up ;;
  down) do_down ;;
  status) do_status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
