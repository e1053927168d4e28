#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432), RabbitMQ (127.0.0.1:5672), Redis (127.0.0.1:6379) and
# a MongoDB-wire document store (127.0.0.1:27017) answer, and that this machine can build the
# project. Reuses whatever already answers; otherwise installs (apt, or PyPI into a virtual
# environment of the project's own) and starts it. Meant to be sourced: it sets STARTED_SERVICES (what it started) and defines
# stop_started_services, so callers can stop exactly what they started.
#
# The PostgreSQL role `postgres` gets the password `postgres` when this script installs the
# server, so the URLs below work with both trust and password authentication.

STARTED_SERVICES=()

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root (or sudo) to run: $*" >&2; return 1; fi
}

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  for _ in $(seq 1 120); do answers "$1" && return 0; sleep 0.5; done
  echo "nothing answers on 127.0.0.1:$1 after 60 s" >&2; return 1
}

# A service this script stops is gone before it returns: the next script must not find the
# port still answering and reuse a server about to exit.
wait_for_port_closed() {
  for _ in $(seq 1 60); do answers "$1" || return 0; sleep 0.5; done
  echo "127.0.0.1:$1 still answers 30 s after it was stopped" >&2; return 1
}

# Stops the process in `pidfile` (TERM, then KILL after 10 s) and waits for `port` to close.
stop_pid() {
  local pidfile=$1 port=$2 pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  wait_for_port_closed "$port"
}

APT_UPDATED=""
apt_install() {
  [ -n "$APT_UPDATED" ] || { as_root apt-get update -qq && APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_build_tools() {
  command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; return 1; }
  command -v cc >/dev/null || { echo "installing a C compiler (ring, the TLS crypto, needs one)"; apt_install build-essential; }
  local tool missing=()
  for tool in curl bc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  [ ${#missing[@]} = 0 ] || apt_install "${missing[@]}"
}

ensure_postgres() {
  if answers 5432; then echo "PostgreSQL: already answering on 127.0.0.1:5432, reusing it"; return 0; fi
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "PostgreSQL: installing (apt)"
    apt_install postgresql postgresql-client
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "PostgreSQL: starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  wait_for_port 5432
  as_root runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >/dev/null
  STARTED_SERVICES+=("postgresql:$version")
}

ensure_rabbitmq() {
  if answers 5672; then echo "RabbitMQ: already answering on 127.0.0.1:5672, reusing it"; return 0; fi
  if ! command -v rabbitmq-server >/dev/null; then
    echo "RabbitMQ: installing (apt)"
    apt_install rabbitmq-server
  fi
  echo "RabbitMQ: starting"
  as_root rabbitmq-server -detached
  wait_for_port 5672
  as_root rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  STARTED_SERVICES+=("rabbitmq")
}

ensure_redis() {
  if answers 6379; then echo "Redis: already answering on 127.0.0.1:6379, reusing it"; return 0; fi
  if ! command -v redis-server >/dev/null; then
    echo "Redis: installing (apt)"
    apt_install redis-server
  fi
  echo "Redis: starting (in memory: nothing saved to disk)"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/bulk-recorder-redis.log
  wait_for_port 6379
  STARTED_SERVICES+=("redis")
}

# What some tests start themselves: throwaway PostgreSQL servers (initdb, pg_ctl and
# pg_basebackup, which Debian keeps in /usr/lib/postgresql/<version>/bin), a TLS terminator
# (socat) in front of RabbitMQ, and a throwaway redis-server (installed with Redis above).
ensure_test_tools() {
  local missing=()
  command -v socat >/dev/null || missing+=(socat)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    missing+=(postgresql)
  fi
  [ ${#missing[@]} = 0 ] || { echo "installing for the tests' own servers (apt): ${missing[*]}"; apt_install "${missing[@]}"; }
}

# The project's Python tools, in a virtual environment of its own (never the system's Python):
# SecantusDB, a MongoDB-wire-protocol server (WiredTiger storage), which stands in for MongoDB
# where `mongod` cannot be installed (the recorder is written for MongoDB 6-8, through the
# official driver), and rotel, an OTLP collector the trace tests read spans from.
TOOLS_VENV="${BULK_RECORDER_TOOLS_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/bulk-recorder/venv}"
SECANTUS_PIN="SecantusDB==0.7.0b3"
ROTEL_PIN="rotel==0.0.1a15"

ensure_python_tools() {
  if "$TOOLS_VENV/bin/python" -c 'import secantus, rotel' 2>/dev/null; then return 0; fi
  command -v python3 >/dev/null || { echo "installing Python (apt)"; apt_install python3 python3-venv; }
  echo "Python tools: installing $SECANTUS_PIN and $ROTEL_PIN into $TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$TOOLS_VENV"; }
  "$TOOLS_VENV/bin/pip" install --disable-pip-version-check -q "$SECANTUS_PIN" "$ROTEL_PIN"
}

# rotel-agent (a binary inside the rotel package, linked to the venv Python's libpython).
rotel_agent() {
  "$TOOLS_VENV/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))'
}

python_libdir() {
  "$TOOLS_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))'
}

MONGO_PORT="${BULK_RECORDER_MONGO_PORT:-27017}"

ensure_mongodb() {
  if answers "$MONGO_PORT"; then echo "MongoDB wire: already answering on 127.0.0.1:$MONGO_PORT, reusing it"; return 0; fi
  ensure_python_tools
  local dir="${BULK_RECORDER_MONGO_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/bulk-recorder/secantus}"
  mkdir -p "$dir/data"
  : > "$dir/empty.toml"   # no configuration file is looked for elsewhere
  echo "MongoDB wire: starting SecantusDB (data in $dir)"
  nohup "$TOOLS_VENV/bin/secantusd-py" --config "$dir/empty.toml" --host 127.0.0.1 --port "$MONGO_PORT" \
    --storage-path "$dir/data" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  wait_for_port "$MONGO_PORT"
  STARTED_SERVICES+=("mongodb:$dir/pid")
}

stop_started_services() {
  local service
  for service in "${STARTED_SERVICES[@]}"; do
    case "$service" in
      postgresql:*) echo "PostgreSQL: stopping (this script started it)"
                    as_root pg_ctlcluster --skip-systemctl-redirect "${service#postgresql:}" main stop || true
                    wait_for_port_closed 5432 ;;
      rabbitmq) echo "RabbitMQ: stopping (this script started it)"; as_root rabbitmqctl -q stop >/dev/null || true
                wait_for_port_closed 5672 ;;
      redis) echo "Redis: stopping (this script started it)"; redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
             wait_for_port_closed 6379 ;;
      mongodb:*) echo "MongoDB wire: stopping (this script started it)"; stop_pid "${service#mongodb:}" "$MONGO_PORT" ;;
    esac
  done
  STARTED_SERVICES=()
}

ensure_services() {
  ensure_build_tools && ensure_postgres && ensure_rabbitmq && ensure_redis && ensure_mongodb
}
