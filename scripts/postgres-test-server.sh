#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's and control's PostgreSQL tests.
#
#   scripts/postgres-test-server.sh start DIR   # prints postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres-test-server.sh stop DIR    # stops it and deletes DIR
#
# The cluster lives in DIR (created; must not exist yet), listens on 127.0.0.1 only, on a free
# port, with trust authentication: for tests on this machine, never for real data. PostgreSQL
# refuses to run as root, so as root the cluster is owned by and run as the `postgres` user.
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [[ -x "$d/initdb" ]] && bindir="$d"
done
if [[ -z "$bindir" ]]; then
  echo "no PostgreSQL found under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
  exit 1
fi

# Runs a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && chown postgres: "$dir"
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
    # A free port: ask the kernel for one (a tiny race with other processes is acceptable in tests).
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # fsync off and no unix socket in /var/run: fast, self-contained, throwaway.
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
