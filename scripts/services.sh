#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432), RabbitMQ (127.0.0.1:5672) and Redis (127.0.0.1:6379)
# answer, and that this machine can build the project. Reuses whatever already answers; otherwise installs (apt) and
# starts it. Meant to be sourced: it sets STARTED_SERVICES (what it started) and defines
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

stop_started_services() {
  local service
  for service in "${STARTED_SERVICES[@]}"; do
    case "$service" in
      postgresql:*) echo "PostgreSQL: stopping (this script started it)"
                    as_root pg_ctlcluster --skip-systemctl-redirect "${service#postgresql:}" main stop || true ;;
      rabbitmq) echo "RabbitMQ: stopping (this script started it)"; as_root rabbitmqctl -q stop >/dev/null || true ;;
      redis) echo "Redis: stopping (this script started it)"; redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true ;;
    esac
  done
  STARTED_SERVICES=()
}

ensure_services() {
  ensure_build_tools && ensure_postgres && ensure_rabbitmq && ensure_redis
}
