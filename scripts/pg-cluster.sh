#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for the adapter tests.
#
# The machine's own PostgreSQL runs with max_prepared_transactions = 0, so
# two-phase-commit tests need a cluster of their own. This script owns that
# cluster's whole life: initdb into <dir>, trust auth, listen on
# 127.0.0.1:<port> only, unix socket inside <dir>, max_prepared_transactions=64,
# start and wait until ready; and `stop`, which kills it (immediate mode) and
# deletes <dir>.
#
#   scripts/pg-cluster.sh start <dir> <port>   # prints nothing but errors; exit 0 when ready
#   scripts/pg-cluster.sh stop  <dir> [<port>] # idempotent
#
# PostgreSQL refuses to run as root, so when this script runs as root (CI does)
# every server binary runs as the `postgres` user through runuser and <dir> is
# handed to that user. Run as any other user it runs the binaries as that user.
# A leftover cluster in <dir> from an earlier, killed run is stopped and wiped
# first, so `start` can always be rerun. The binaries come from $PG_BIN, else
# `pg_config --bindir`, else the newest /usr/lib/postgresql/*/bin.
#
# Network-fault tests run a cluster as a host of their own: DTX_PG_NETNS names
# a network namespace to start the server in (`ip netns exec`), and
# DTX_PG_LISTEN the address it listens on there (default 127.0.0.1). The unix
# socket stays in <dir>, reachable from any namespace.
set -euo pipefail

usage() {
  echo "usage: $0 start <dir> <port> | stop <dir> [<port>]" >&2
  exit 2
}

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$2
port=${3:-}

# Refuse anything that could make `rm -rf` dangerous.
case "$dir" in
  /*) ;;
  *) echo "pg-cluster: <dir> must be an absolute path, got '$dir'" >&2; exit 2 ;;
esac
if [[ "$dir" == "/" || "$dir" =~ [[:space:]] || "$(basename "$dir")" != dtx-pg* ]]; then
  echo "pg-cluster: refusing <dir> '$dir': its last component must start with 'dtx-pg' and contain no spaces" >&2
  exit 2
fi

find_bin() {
  if [[ -n "${PG_BIN:-}" && -x "$PG_BIN/pg_ctl" ]]; then
    echo "$PG_BIN"
    return
  fi
  if command -v pg_config >/dev/null 2>&1; then
    local b
    b=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n "$b" && -x "$b/pg_ctl" && -x "$b/initdb" ]]; then
      echo "$b"
      return
    fi
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n "$newest" && -x "$newest/pg_ctl" ]]; then
    echo "$newest"
    return
  fi
  echo "pg-cluster: cannot find PostgreSQL server binaries (initdb, pg_ctl); set PG_BIN" >&2
  exit 1
}

bin=$(find_bin)

listen=${DTX_PG_LISTEN:-127.0.0.1}
netns=${DTX_PG_NETNS:-}
if [[ ! "$listen" =~ ^[0-9.]+$ ]]; then
  echo "pg-cluster: DTX_PG_LISTEN must be an IPv4 address, got '$listen'" >&2
  exit 2
fi
if [[ -n "$netns" && ! "$netns" =~ ^[A-Za-z0-9_-]+$ ]]; then
  echo "pg-cluster: DTX_PG_NETNS must be a namespace name (letters, digits, _ and -), got '$netns'" >&2
  exit 2
fi

# Run a server binary as a user PostgreSQL accepts (in DTX_PG_NETNS when set).
as_pg() {
  local prefix=()
  if [[ -n "$netns" ]]; then
    prefix=(ip netns exec "$netns")
  fi
  if [[ $(id -u) -eq 0 ]]; then
    "${prefix[@]}" runuser -u postgres -- "$@"
  else
    "${prefix[@]}" "$@"
  fi
}

stop_cluster() {
  if [[ -f "$dir/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  # A postmaster whose pid file is gone or unreadable: kill it by the pid it recorded, if any.
  if [[ -f "$dir/postmaster.pid" ]]; then
    local pid
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -rf "$dir" "$dir.initdb.log"
}

start_cluster() {
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  stop_cluster # a leftover from a killed run

  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "pg-cluster: port $port on 127.0.0.1 is already in use by another process" >&2
    exit 1
  fi

  mkdir -p "$dir"
  chmod 700 "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres:postgres "$dir"
  fi

  if ! as_pg "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C --no-sync --no-instructions \
    >"$dir.initdb.log" 2>&1; then
    cat "$dir.initdb.log" >&2
    rm -f "$dir.initdb.log"
    exit 1
  fi
  rm -f "$dir.initdb.log"

  cat >>"$dir/postgresql.conf" <<EOF

# dtx test cluster (scripts/pg-cluster.sh)
listen_addresses = '$listen'
port = $port
unix_socket_directories = '$dir'
max_prepared_transactions = 64
max_connections = 40
shared_buffers = 16MB
fsync = on
EOF

  if [[ "$listen" != 127.0.0.1 ]]; then
    # Clients on the test network reach it over the subnets its host is on.
    echo 'host all all samenet trust' >>"$dir/pg_hba.conf"
  fi

  if ! as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null; then
    echo "pg-cluster: server did not start; log follows" >&2
    tail -n 40 "$dir/server.log" >&2 || true
    exit 1
  fi
}

case "$cmd" in
  start) start_cluster ;;
  stop) stop_cluster ;;
  *) usage ;;
esac
