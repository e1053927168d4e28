#!/usr/bin/env bash
# The demo: the recorder against real RabbitMQ, PostgreSQL, Redis and a MongoDB-wire document
# store on this machine, doing everything the ledger's own consumer does.
#
# Starts (or installs) the services when they do not answer, creates the database
# `bulk_recorder_demo`, writes the ledger's Redis backup entries (in Redis database 15, which
# the demo empties) and publishes 10,000 transactions (5 operations each) in turn as JSON,
# msgpack and the reference ledger's own message format, ~5% of them twice, 10% as PENDING
# followed by their commit, 20% with metadata, and 12 invalid messages; runs the recorder
# (format auto) until the queue is drained, prints what it counted, the metadata documents and
# events it left next to what the ledger's consumer would have, what became of the ledger's
# backup entries and its throughput, then stops the recorder and whatever services it started.
# Usage: ./scripts/demo.sh [--count N] [more `bulk-recorder-publish` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_services

DB=bulk_recorder_demo
QUEUE=bulk_recorder_demo
PORT=${DEMO_METRICS_PORT:-9090}
export RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/%2f"
export RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE=$QUEUE
export DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/$DB"
export METRICS_ADDR="127.0.0.1:$PORT"
# The ledger's Redis backup: a database of the demo's own.
export REDIS_URL="redis://127.0.0.1:6379/15"
# The ledger's metadata (a database of the demo's own) and its events (an exchange of the
# demo's own, with a queue bound to it to count them).
export MONGODB_URL="mongodb://127.0.0.1:27017"
export MONGODB_DATABASE=bulk_recorder_demo
EVENTS=bulk_recorder_demo.events
export RABBITMQ_TRANSACTION_EVENTS_EXCHANGE=$EVENTS
export RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE=$EVENTS
mongo() { "$TOOLS_VENV/bin/python" -c "import pymongo; db = pymongo.MongoClient('$MONGODB_URL')['$MONGODB_DATABASE']; $1"; }

RECORDER_PID=""
cleanup() {
  [ -z "$RECORDER_PID" ] || kill -TERM "$RECORDER_PID" 2>/dev/null || true
  [ -z "$RECORDER_PID" ] || wait "$RECORDER_PID" 2>/dev/null || true
  rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_queue "$EVENTS" >/dev/null 2>&1 || true
  stop_started_services
}
trap cleanup EXIT

echo "== building the recorder (release)"
cargo build --release --locked -q -p bulk-recorder -p bulk-recorder-publish
BIN=target/release/bulk-recorder

echo "== fresh database $DB and queue $QUEUE"
psql -q "postgres://postgres:postgres@127.0.0.1:5432/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
rabbitmqctl -q delete_queue "$QUEUE" >/dev/null 2>&1 || true
rabbitmqctl -q delete_queue "$EVENTS" >/dev/null 2>&1 || true
redis-cli -n 15 FLUSHDB >/dev/null
mongo "db.client.drop_database('$MONGODB_DATABASE')"

echo "== publishing (the ledger's backup entries first, as the ledger does)"
published=$("$BIN-publish" --count 10000 --operations 5 --duplicates 5 --pending 10 \
  --invalid 12 --metadata 20 --format json,msgpack,midaz --ledger-redis "$REDIS_URL" \
  --events-exchange "$EVENTS" "$@")
echo "$published"
messages=$(sed -E 's/.*published=([0-9]+).*/\1/' <<<"$published")

metrics() { curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null; }
metric() { metrics | awk -v n="$1" '$1 == n { printf "%d", $2 }'; }
# The sum of a metric's labelled samples, or of one label's value when given.
family() { metrics | awk -v n="$1" -v l="${2:-}" 'index($1, n "{") == 1 && index($1, l) { s += $2 } END { printf "%d", s }'; }
rejected() { family bulk_recorder_messages_rejected_total; }

echo "== running the recorder until the queue is drained"
LOG=$(mktemp /tmp/bulk-recorder-demo.XXXXXX.log)
"$BIN" 2>"$LOG" &
RECORDER_PID=$!
start=$(date +%s.%N)
while :; do
  done_count=$(( $(metric bulk_recorder_transactions_attempted_total || echo 0) + $(rejected || echo 0) + $(family bulk_recorder_messages_skipped_total || echo 0) ))
  [ "$done_count" -ge "$messages" ] && break
  kill -0 "$RECORDER_PID" 2>/dev/null || { echo "the recorder exited; its log: $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
  sleep 0.05
done
end=$(date +%s.%N)

t_att=$(metric bulk_recorder_transactions_attempted_total); t_ins=$(metric bulk_recorder_transactions_inserted_total)
t_ign=$(metric bulk_recorder_transactions_ignored_total); t_upd=$(metric bulk_recorder_transactions_updated_total)
t_con=$(metric bulk_recorder_transactions_conflicting_total)
o_att=$(metric bulk_recorder_operations_attempted_total); o_ins=$(metric bulk_recorder_operations_inserted_total)
o_ign=$(metric bulk_recorder_operations_ignored_total); o_con=$(metric bulk_recorder_operations_conflicting_total)
rej=$(rejected); statements=$(metric bulk_recorder_db_statements_total)
flushes=$(family bulk_recorder_flushes_total)
formats=$(for f in json msgpack midaz midaz_legacy; do printf '%s=%d ' "$f" "$(family bulk_recorder_messages_decoded_total "\"$f\"")"; done)
pending=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM transaction WHERE status = 'PENDING'")
rows_t=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM transaction")
rows_o=$(psql -At "$DATABASE_URL" -c "SELECT count(*) FROM operation")
ready=$(rabbitmqctl -q list_queues name messages_ready messages_unacknowledged | awk -v q="$QUEUE" '$1 == q { print $2 "/" $3 }')
cleanup=$(for r in removed kept absent failed dropped; do printf '%s=%d ' "$r" "$(family bulk_recorder_ledger_cleanup_total "\"$r\"")"; done)
with_metadata=$(sed -E 's/.*with_metadata=([0-9]+).*/\1/' <<<"$published")
docs=$(for c in transaction operation; do printf '%s=%d ' "$c" "$(family bulk_recorder_metadata_documents_total "collection=\"$c\",result=\"written\"")"; done)
existed=$(family bulk_recorder_metadata_documents_total 'result="existed"')
stored_docs=$(mongo "print(db.transaction.count_documents({}), db.operation.count_documents({}))")
events=$(for k in transaction overdraft; do printf '%s=%d ' "$k" "$(family bulk_recorder_events_published_total "\"$k\"")"; done)
events_total=$(family bulk_recorder_events_published_total)
events_queued=$(rabbitmqctl -q list_queues name messages | awk -v q="$EVENTS" '$1 == q { print $2 }')
# The backlog is retried in the background: give a failed cleanup a moment before counting.
sleep 1
left_entries=$(redis-cli -n 15 HLEN 'backup_queue:{transactions}')
left_keys=$(redis-cli -n 15 --scan --pattern 'wb_transaction:*' | wc -l)
seconds=$(echo "$end - $start" | bc -l)

kill -TERM "$RECORDER_PID"; wait "$RECORDER_PID"; RECORDER_PID=""

printf '\n%-14s %10s %10s %10s %10s %12s\n' "" attempted inserted updated ignored conflicting
printf '%-14s %10d %10d %10d %10d %12d\n' transactions "$t_att" "$t_ins" "$t_upd" "$t_ign" "$t_con"
printf '%-14s %10d %10d %10s %10d %12d\n' operations "$o_att" "$o_ins" - "$o_ign" "$o_con"
printf 'messages decoded by format: %s\n' "$formats"
printf 'rejected messages: %d (dead-lettered or dropped by the queue policy)\n' "$rej"
printf 'rows in PostgreSQL: transaction=%d operation=%d, still PENDING: %d\n' "$rows_t" "$rows_o" "$pending"
printf 'queue ready/unacked after the run: %s\n' "${ready:-0/0}"
printf "the ledger's Redis backup entries: %s; left in Redis: %d entries, %d write-behind keys\n" "$cleanup" "$left_entries" "$left_keys"
printf "metadata: %d transactions carried it; documents written: %s(%d found already: redeliveries and commits); in the store: transaction/operation = %s\n" "$with_metadata" "$docs" "$existed" "$stored_docs"
printf "  the ledger's consumer writes the same documents: one per transaction and per operation with a metadata map\n"
printf "events published and confirmed: %s; in the demo's event queue: %s\n" "$events" "${events_queued:-0}"
printf "  the ledger's consumer publishes one per persisted message too, after its ack and unconfirmed (its bulk path drops\n  those of commits sharing a bulk with new postings); these were confirmed before each acknowledgement\n"
printf 'bulks: %d, statements: %d (%.2f per bulk: COPY of both tables, or one upsert)\n' "$flushes" "$statements" "$(echo "$statements / $flushes" | bc -l)"
printf 'throughput: %.0f transactions/s (%.0f operations/s) over %.2f s\n' \
  "$(echo "$t_att / $seconds" | bc -l)" "$(echo "$o_att / $seconds" | bc -l)" "$seconds"
echo "recorder log: $LOG"

# The demo checks what it printed (CI runs it): a run that leaves anything behind fails.
invalid=$(sed -E 's/.*invalid=([0-9]+).*/\1/' <<<"$published")
problems=()
[ "$rows_t" = "$t_ins" ] || problems+=("transaction rows $rows_t, inserted $t_ins")
[ "$rows_o" = "$o_ins" ] || problems+=("operation rows $rows_o, inserted $o_ins")
[ "$pending" = 0 ] || problems+=("$pending transactions still PENDING")
[ "${ready:-0/0}" = 0/0 ] || problems+=("the queue holds $ready (ready/unacked)")
[ "$rej" = "$invalid" ] || problems+=("$rej rejected for $invalid invalid messages")
[ "$left_entries/$left_keys" = 0/0 ] || problems+=("Redis keeps $left_entries backup entries and $left_keys write-behind keys")
[ "${events_queued:-0}" = "$events_total" ] || problems+=("${events_queued:-0} events queued, $events_total published")
if [ ${#problems[@]} -gt 0 ]; then
  printf 'the demo went wrong: %s\n' "${problems[@]}" >&2
  exit 1
fi
