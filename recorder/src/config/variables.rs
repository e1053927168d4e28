//! Every environment variable of the recorder, once: name, default, what is accepted, meaning.
//!
//! [`super::Config::from_vars`] reads defaults and ranges from here, and a test renders this
//! table and finds it, row for row, in `docs/configuration.md`, so that the code and
//! the documentation cannot disagree.

/// What a variable is when it is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    Required,
    Unset,
    Int(u64),
    Bool(bool),
    Text(&'static str),
    /// A number whose meaning is explained (`0 = workers x prefetch`).
    Explained(u64, &'static str),
}

/// What a variable accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    Range(u64, u64),
    Bool,
    OneOf(&'static [&'static str]),
    /// Checked in code, described here (a URL, an address, a range that depends on another
    /// variable).
    Described(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub default: Default,
    pub accepted: Accepted,
    pub meaning: &'static str,
}

impl Default {
    pub fn shown(self) -> String {
        match self {
            Default::Required => "required".into(),
            Default::Unset => "unset".into(),
            Default::Int(n) => n.to_string(),
            Default::Bool(b) => b.to_string(),
            Default::Text(t) => t.into(),
            Default::Explained(n, why) => format!("{n} {why}"),
        }
    }
}

impl Accepted {
    pub fn shown(self) -> String {
        match self {
            Accepted::Range(min, max) => format!("{min}..{max}"),
            Accepted::Bool => "bool".into(),
            Accepted::OneOf(values) => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Accepted::Described(text) => text.into(),
        }
    }
}

impl Variable {
    /// This variable's row of the documentation's table of variables.
    pub fn row(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} |",
            self.name,
            self.default.shown(),
            self.accepted.shown(),
            self.meaning
        )
    }
}

/// The variable named `name`; a typo in the code is a bug, caught by every test.
pub fn variable(name: &str) -> &'static Variable {
    VARIABLES
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the table of variables"))
}

const fn var(
    name: &'static str,
    default: Default,
    accepted: Accepted,
    meaning: &'static str,
) -> Variable {
    Variable {
        name,
        default,
        accepted,
        meaning,
    }
}

pub static VARIABLES: &[Variable] = &[
    var(
        "RABBITMQ_URL",
        Default::Required,
        Accepted::Described("`amqp://` or `amqps://` URL"),
        "the broker; the vhost is one segment (`/` is written `%2f`); query parameters `heartbeat`, `connection_timeout`, `frame_max`, `channel_max`, `auth_mechanism` and, for TLS, `cacertfile=<path>` (a PEM CA trusted besides the system's CA certificates); the broker's certificate must hold the URL's host name or address",
    ),
    var(
        "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
        Default::Required,
        Accepted::Described(""),
        "queue to consume; declared durable only when it does not exist at start-up, never redeclared (a queue with a dead-letter exchange, quorum type or length limit is used as it is); if a queue that existed is deleted, the recorder waits for it to be declared again instead of making a plain one",
    ),
    var(
        "RABBITMQ_NUMBERS_OF_WORKERS",
        Default::Int(5),
        Accepted::Range(1, 256),
        "consumer channels on one connection",
    ),
    var(
        "RABBITMQ_NUMBERS_OF_PREFETCH",
        Default::Int(10),
        Accepted::Range(1, 65535),
        "prefetch per worker: a bulk holds at most workers x this many messages; in bulk mode each channel's `basic.qos` is raised to hold, all channels together, the bulks in flight and the one being collected (`max(prefetch, ⌈size x (bulks in flight + 1) / workers⌉)`: 30 at the defaults)",
    ),
    var(
        "RABBITMQ_TRANSACTION_ASYNC",
        Default::Bool(true),
        Accepted::Bool,
        "bulk mode requires it, as in the reference ledger",
    ),
    var(
        "BULK_RECORDER_ENABLED",
        Default::Bool(true),
        Accepted::Bool,
        "false: one message at a time, one INSERT per row (the baseline)",
    ),
    var(
        "BULK_RECORDER_SIZE",
        Default::Explained(0, "= workers x prefetch"),
        Accepted::Described("0..workers x prefetch"),
        "messages per bulk",
    ),
    var(
        "BULK_RECORDER_FLUSH_TIMEOUT_MS",
        Default::Int(100),
        Accepted::Range(1, 60_000),
        "longest wait after a bulk's first message before it is flushed partial",
    ),
    // 2000 rows x the widest table's 31 columns stays under PostgreSQL's 65535 bind parameters
    // (the limit of the reference's multi-row VALUES; the unnest arrays have none).
    var(
        "BULK_RECORDER_MAX_ROWS_PER_INSERT",
        Default::Int(1000),
        Accepted::Range(1, 2000),
        "rows of one table per INSERT statement",
    ),
    var(
        "BULK_RECORDER_FALLBACK_ENABLED",
        Default::Bool(true),
        Accepted::Bool,
        "a bulk refused on data is written again one message at a time; false: it is halved until the refused message stands alone (see [What happens to a message](reliability.md#what-happens-to-a-message))",
    ),
    var(
        "DATABASE_URL",
        Default::Required,
        Accepted::Described("`postgres://` URL"),
        "the database; `sslmode` (`require`, `verify-ca`, `verify-full`, ...) is honoured; `sslrootcert=<path>` (a PEM CA) needs `sslmode=verify-ca` or `verify-full` (this client ignores it below them, unlike libpq, so that is refused)",
    ),
    var(
        "BULK_RECORDER_MIGRATE",
        Default::Bool(true),
        Accepted::Bool,
        "create the tables at start-up; false to write into a ledger's existing tables",
    ),
    var(
        "BULK_RECORDER_MAX_MESSAGE_BYTES",
        Default::Int(1_048_576),
        Accepted::Range(1, 134_217_728),
        "larger bodies are rejected as `too_large`",
    ),
    var(
        "BULK_RECORDER_MESSAGE_FORMAT",
        Default::Text("auto"),
        Accepted::OneOf(&["auto", "json", "msgpack", "midaz"]),
        "how bodies are read; `auto` decides per message from the body (see [Message formats](message-formats.md))",
    ),
    var(
        "BULK_RECORDER_BULKS_IN_FLIGHT",
        Default::Int(2),
        Accepted::Range(1, 16),
        "bulks written at once, each on a connection of its own, while the next one is collected; settlement stays in order; each channel's prefetch grows with it. More helps only with a database with cores to spare",
    ),
    var(
        "BULK_RECORDER_MISSING_PARENT_WAIT_MS",
        Default::Int(30_000),
        Accepted::Range(0, 600_000),
        "how long a transaction whose `parentTransactionId` is not stored yet waits for it (its parent may be in another recorder's bulk, or later in the queue), retried aside while everything else goes on, before it is dead-lettered as `missing_parent`; 0: at once",
    ),
    // 25 s: within Kubernetes' default 30 s grace period (the operator sets the pod's grace to
    // this plus 5 s).
    var(
        "BULK_RECORDER_SHUTDOWN_TIMEOUT_MS",
        Default::Int(25_000),
        Accepted::Range(1000, 3_600_000),
        "the whole shutdown's budget: after SIGTERM the recorder stops consuming, writes what it holds, and lets everything under way (writes, documents, events, dead letters, acknowledgements) finish within it; what cannot is returned to the queue (`bulk_recorder_shutdown_requeued_total`). The last fifth of it (at most 5 s) is kept for returning messages, the last Redis cleanup and closing connections. Keep it below the pod's `terminationGracePeriodSeconds`",
    ),
    // 10 s: a bulk of 2000 rows takes well under a second; anything near this is a stall, and
    // flush timeout + one statement must still fit Kubernetes' default 30 s grace period.
    var(
        "BULK_RECORDER_STATEMENT_TIMEOUT_MS",
        Default::Int(10_000),
        Accepted::Range(1, 600_000),
        "PostgreSQL `statement_timeout` of every recorder statement (not COMMIT: a timeout would cancel its wait for a synchronous standby): a write that takes longer fails as a transient error and is retried, instead of stalling the pipeline; also bounds the migrations",
    ),
    // 5 s: long enough for row locks held by another writer's bulk, short enough to give up on
    // a table locked by maintenance and retry later (the retry backs off).
    var(
        "BULK_RECORDER_LOCK_TIMEOUT_MS",
        Default::Explained(5000, "(at most the statement timeout)"),
        Accepted::Described("1..statement timeout"),
        "PostgreSQL `lock_timeout`: the longest a write waits for a lock held elsewhere before it fails as transient and is retried with backoff",
    ),
    var(
        "BULK_RECORDER_DEAD_LETTER_EXCHANGE",
        Default::Unset,
        Accepted::Described("an existing exchange (`\"\"`: the default exchange)"),
        "when set, a rejected message is published there unchanged with the headers `x-bulk-recorder-reason`, `x-bulk-recorder-error` and `x-bulk-recorder-pod`, confirmed by the broker, then acknowledged; unset: plain `reject` (the queue's own dead-letter exchange, if any)",
    ),
    var(
        "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY",
        Default::Unset,
        Accepted::Described("text"),
        "routing key of those dead letters (the ledger's own topology: exchange `transaction.dlx`, key `transaction.dlq.key`); unset: the routing key the message arrived with, as RabbitMQ's own dead-lettering does",
    ),
    var(
        "REDIS_URL",
        Default::Unset,
        Accepted::Described("`redis://`, `rediss://`, `redis+cluster://`, `redis+sentinel://` URL"),
        "when set, the ledger's Redis backup is acknowledged after every commit, as its own consumer does (see [Switching from the ledger's consumer](switching-from-the-ledger.md))",
    ),
    var(
        "BULK_RECORDER_REDIS_TIMEOUT_MS",
        Default::Int(1000),
        Accepted::Range(1, 10_000),
        "the longest one cleanup of the ledger's Redis backup waits for its answer before it is retried (in the background: no acknowledgement waits for Redis)",
    ),
    var(
        "MONGODB_URL",
        Default::Unset,
        Accepted::Described("`mongodb://` or `mongodb+srv://` URL"),
        "when set, the ledger's metadata is stored in its document store as its own consumer stores it (collections `transaction` and `operation`), before the messages are acknowledged; TLS, credentials and `w=` as the official driver reads them",
    ),
    var(
        "MONGODB_DATABASE",
        Default::Text("transaction"),
        Accepted::Described("text"),
        "the database of the ledger's metadata (its `MONGO_TRANSACTION_NAME`)",
    ),
    var(
        "RABBITMQ_TRANSACTION_EVENTS_EXCHANGE",
        Default::Unset,
        Accepted::Described("an exchange (the ledger's is a durable `topic`)"),
        "when set, the ledger's transaction event (`midaz.transaction.<STATUS>`) of every stored message is published there, confirmed by the broker, before the message is acknowledged",
    ),
    var(
        "RABBITMQ_TRANSACTION_EVENTS_ENABLED",
        Default::Bool(true),
        Accepted::Described(
            "`false` turns them off; any other value leaves them on, as the ledger reads it",
        ),
        "transaction events on or off (the ledger's own switch)",
    ),
    var(
        "RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE",
        Default::Unset,
        Accepted::Described("an exchange"),
        "when set, the ledger's overdraft events (`midaz.balance.overdraft.<drawn|repaid|cleared>`) are published there likewise",
    ),
    var(
        "RABBITMQ_OVERDRAFT_EVENTS_ENABLED",
        Default::Bool(true),
        Accepted::Described(
            "`false` turns them off; any other value leaves them on, as the ledger reads it",
        ),
        "overdraft events on or off (the ledger's own switch)",
    ),
    var(
        "VERSION",
        Default::Unset,
        Accepted::Described("text"),
        "the `version` the events carry (the ledger's own variable; empty when unset)",
    ),
    var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        Default::Unset,
        Accepted::Described("`http://` or `https://` URL"),
        "when set, traces are exported there over OTLP: a span per bulk written, linked to every message's producer trace (`traceparent`), with child spans for the statements, the commit's durability wait, the document store, the events and Redis; a rejected message gets a span under its producer's trace. `/v1/traces` is added for `http/protobuf`",
    ),
    var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        Default::Unset,
        Accepted::Described("URL"),
        "the traces endpoint as it is (takes precedence over `OTEL_EXPORTER_OTLP_ENDPOINT`)",
    ),
    var(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        Default::Text("grpc"),
        Accepted::OneOf(&["grpc", "http/protobuf"]),
        "the OTLP transport",
    ),
    var(
        "OTEL_SERVICE_NAME",
        Default::Text("bulk-recorder"),
        Accepted::Described("text"),
        "`service.name` of the spans (`OTEL_RESOURCE_ATTRIBUTES` adds more)",
    ),
    var(
        "OTEL_TRACES_SAMPLER",
        Default::Text("parentbased_always_on"),
        Accepted::OneOf(&[
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ]),
        "which traces are kept (a bulk's span is a root: `parentbased_*` decide it as their root sampler does)",
    ),
    var(
        "OTEL_TRACES_SAMPLER_ARG",
        Default::Unset,
        Accepted::Described("0..1"),
        "the ratio of the `traceidratio` samplers (1 when unset)",
    ),
    var(
        "OTEL_SDK_DISABLED",
        Default::Bool(false),
        Accepted::Bool,
        "true: no traces, whatever the endpoint",
    ),
    var(
        "LOG_FORMAT",
        Default::Text("text"),
        Accepted::OneOf(&["text", "json"]),
        "`json`: one JSON object per line; `RUST_LOG` sets the levels",
    ),
    var(
        "METRICS_ADDR",
        Default::Text("[::]:9090"),
        Accepted::Described("address"),
        "`/metrics`, `/healthz`, `/readyz`; `[::]` takes IPv4 and IPv6 clients, and falls back to `0.0.0.0` on a host without IPv6",
    ),
    var(
        "BULK_RECORDER_NAME",
        Default::Unset,
        Accepted::Described("text"),
        "in a cluster: the `BulkRecorder` this recorder reports its counts to (with `POD_NAMESPACE` and `POD_NAME`)",
    ),
    var(
        "POD_NAMESPACE",
        Default::Unset,
        Accepted::Described("text"),
        "the recorder's namespace (the downward API), for reporting",
    ),
    var(
        "POD_NAME",
        Default::Unset,
        Accepted::Described("text"),
        "the recorder's pod (the downward API): names its consumers, its dead letters and its status entry",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The documentation's table of variables (docs/configuration.md) holds exactly these rows.
    #[test]
    fn the_readme_documents_every_variable_as_the_code_reads_it() {
        let expected: Vec<String> = VARIABLES.iter().map(Variable::row).collect();
        crate::docs_table::assert_configuration_table(
            "| variable | default | accepted | meaning |",
            "variables",
            &expected,
        );
    }
}
