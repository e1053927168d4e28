//! What a user asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, LocalObjectReference, ResourceRequirements,
    SecretVolumeSource, Toleration, TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The longest BulkRecorder name: the operator names a Service `<name>-metrics`, and a Service
/// name is a DNS-1035 label of at most 63 characters.
pub const MAX_NAME_LENGTH: usize = 55;

/// The CEL rule on `metadata.name` (the schema also caps its length, which bounds the rule's
/// cost).
pub const NAME_RULE: &str = "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";

/// A pool of recorders that persist ledger transactions from one RabbitMQ queue into
/// PostgreSQL in bulk.
// Each printer column repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "bulkrecorder.io",
    version = "v1alpha1",
    kind = "BulkRecorder",
    plural = "bulkrecorders",
    shortname = "br",
    namespaced,
    category = "bulk-recorder",
    doc = "A pool of recorders that persist ledger transactions from one RabbitMQ queue into PostgreSQL in bulk. The operator runs them as a Deployment named like the resource, with a Service <name>-metrics; the name must be a DNS-1035 label of at most 55 characters.",
    validation = Rule::new(NAME_RULE).message(
        "metadata.name must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit (a DNS-1035 label of at most 55 characters): the operator names a Service <name>-metrics after it, and Kubernetes refuses other Service names"
    ),
    status = "crate::BulkRecorderStatus",
    // `kubectl scale`, HorizontalPodAutoscalers and KEDA drive spec.replicas through /scale;
    // an HPA refuses a target whose scale has no selector.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Workers", type_ = "integer", json_path = ".spec.workers"),
    printcolumn(name = "Prefetch", type_ = "integer", json_path = ".spec.prefetch"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        description = "Effective bulk size",
        json_path = ".status.effectiveSize"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Backlog",
        type_ = "integer",
        description = "Ready messages in the queue, as a recorder last measured them",
        json_path = ".status.backlog"
    ),
    printcolumn(
        name = "Attempted",
        type_ = "integer",
        json_path = ".status.counts.transactions.attempted"
    ),
    printcolumn(
        name = "Inserted",
        type_ = "integer",
        json_path = ".status.counts.transactions.inserted"
    ),
    printcolumn(
        name = "Ignored",
        type_ = "integer",
        json_path = ".status.counts.transactions.ignored"
    ),
    printcolumn(
        name = "Updated",
        type_ = "integer",
        description = "PENDING transactions moved to a final status",
        json_path = ".status.counts.transactions.updated"
    ),
    printcolumn(
        name = "Rejected",
        type_ = "integer",
        description = "Messages rejected without requeue (dead-lettered, or dropped by the queue's policy)",
        json_path = ".status.counts.rejected"
    ),
    printcolumn(
        name = "Conflicting",
        type_ = "integer",
        description = "Transaction ids stored with other content (kept, not overwritten)",
        json_path = ".status.counts.transactions.conflicting",
        priority = 1
    ),
    printcolumn(
        name = "Reconciled",
        type_ = "date",
        description = "When the operator last reconciled the resource: refreshed at least every 5 minutes while an operator runs, so an older time means none does",
        json_path = ".status.lastReconcileTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.size) || self.size <= self.workers * self.prefetch").message(
    "spec.size must not exceed spec.workers * spec.prefetch (the ledger's contract: a bulk holds at most workers * prefetch messages): lower size, raise workers or prefetch, or remove size to use workers * prefetch"
))]
#[x_kube(validation = Rule::new("!has(self.lockTimeoutMs) || self.lockTimeoutMs <= self.statementTimeoutMs").message(
    "spec.lockTimeoutMs must not exceed spec.statementTimeoutMs (a statement never waits longer than it may run): lower lockTimeoutMs or raise statementTimeoutMs"
))]
#[serde(rename_all = "camelCase")]
pub struct BulkRecorderSpec {
    /// Recorder container image. Defaults to the image the operator was started with
    /// (`--recorder-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Recorder pods. 0 stops recording without deleting the resource. `kubectl scale`, a
    /// HorizontalPodAutoscaler or KEDA may set it through the scale subresource; leave it out of
    /// applied manifests when one of them drives it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Consumer channels per pod (RABBITMQ_NUMBERS_OF_WORKERS).
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub workers: i32,

    /// Prefetch per worker (RABBITMQ_NUMBERS_OF_PREFETCH): a bulk holds at most
    /// workers * prefetch messages. In bulk mode each channel's basic.qos is raised to hold, all
    /// channels together, the bulks in flight and the one being collected
    /// (max(prefetch, ceil(size * (bulksInFlight + 1) / workers))), so that the next bulk fills
    /// while the others are written.
    #[serde(default = "default_prefetch")]
    #[schemars(range(min = 1, max = 65535))]
    pub prefetch: i32,

    /// Messages per bulk (BULK_RECORDER_SIZE). Unset: workers * prefetch. At most
    /// workers * prefetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub size: Option<i32>,

    /// Longest wait, in milliseconds, after a bulk's first message before a partial bulk is
    /// written (BULK_RECORDER_FLUSH_TIMEOUT_MS).
    #[serde(default = "default_flush_timeout_ms")]
    #[schemars(range(min = 1, max = 60000))]
    pub flush_timeout_ms: i32,

    /// Rows of one table per INSERT statement (BULK_RECORDER_MAX_ROWS_PER_INSERT). At most 2000:
    /// 2000 rows of the widest table stay under PostgreSQL's 65535 bind parameters.
    #[serde(default = "default_max_rows_per_insert")]
    #[schemars(range(min = 1, max = 2000))]
    pub max_rows_per_insert: i32,

    /// Retry a bulk that PostgreSQL refuses on data one message at a time, so that one bad
    /// message costs only itself (BULK_RECORDER_FALLBACK_ENABLED).
    #[serde(default = "default_true")]
    pub fallback_enabled: bool,

    /// Write in bulk. false: one message at a time, one INSERT per row (the baseline).
    #[serde(default = "default_true")]
    pub bulk_enabled: bool,

    /// Bulks written at once, each on a database connection of its own, while the next one is
    /// collected (BULK_RECORDER_BULKS_IN_FLIGHT); each channel's prefetch grows with it. More
    /// helps only when the database has cores to spare.
    #[serde(default = "default_bulks_in_flight")]
    #[schemars(range(min = 1, max = 16))]
    pub bulks_in_flight: i32,

    /// PostgreSQL statement_timeout of the recorder's sessions, in milliseconds
    /// (BULK_RECORDER_STATEMENT_TIMEOUT_MS). A write also gives up, client side, after this
    /// per statement plus 5 s, and the bulk is retried.
    #[serde(default = "default_statement_timeout_ms")]
    #[schemars(range(min = 1, max = 600000))]
    pub statement_timeout_ms: i32,

    /// PostgreSQL lock_timeout of the recorder's sessions, in milliseconds
    /// (BULK_RECORDER_LOCK_TIMEOUT_MS). Unset: 5000, or the statement timeout when lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub lock_timeout_ms: Option<i32>,

    /// The recorder's whole shutdown budget, in seconds (BULK_RECORDER_SHUTDOWN_TIMEOUT_MS = this
    /// x 1000): after SIGTERM everything under way (writes, documents, events, dead letters,
    /// acknowledgements) finishes within it, and only what cannot goes back to the queue. The
    /// pods' terminationGracePeriodSeconds is this plus 5, room for the final status report and
    /// the exit.
    #[serde(default = "default_shutdown_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub shutdown_timeout_seconds: i32,

    /// How long, in milliseconds, a transaction whose parentTransactionId is not stored yet is
    /// retried before it is dead-lettered as missing_parent
    /// (BULK_RECORDER_MISSING_PARENT_WAIT_MS).
    #[serde(default = "default_missing_parent_wait_ms")]
    #[schemars(range(min = 0, max = 600000))]
    pub missing_parent_wait_ms: i32,

    /// Encoding of the queue's messages (BULK_RECORDER_MESSAGE_FORMAT): `auto` decides per
    /// message from its body (the reference ledger labels its msgpack bodies
    /// application/json); `json`, `msgpack` (the same object as a msgpack map) or `midaz` (the
    /// reference ledger's own msgpack envelope) accept that encoding only.
    #[serde(default)]
    pub message_format: MessageFormat,

    /// Where the transactions come from.
    pub rabbitmq: RabbitMqSpec,

    /// Where they are written.
    pub postgres: PostgresSpec,

    /// CPU and memory for the recorder container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Secrets (in this namespace) for pulling the recorder image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Annotations added to the recorder pods (a service mesh, a log collector, a scraper).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Labels added to the recorder pods. The operator's own `app.kubernetes.io/*` labels win
    /// over labels of the same key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Node labels a recorder pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the recorder pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and pod (anti-)affinity of the recorder pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How recorder pods spread over zones or nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the recorder pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Secrets or ConfigMaps mounted read-only into the recorder container, for example a CA
    /// bundle that DATABASE_URL names with `sslrootcert=<mountPath>/ca.crt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub volumes: Vec<RecorderVolume>,

    /// A PodDisruptionBudget `<name>` (maxUnavailable 1) for the recorder pods while replicas
    /// is above 1, so that node drains stop one recorder at a time. false: none.
    #[serde(default = "default_true")]
    pub pod_disruption_budget: bool,

    /// Monitoring objects for the recorder pods.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// The ledger's Redis. Unset: the recorder does not touch Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,

    /// The ledger's document store, where the ledger keeps transaction and operation metadata.
    /// Unset: metadata is counted (bulk_recorder_metadata_not_stored_total), not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongoSpec>,

    /// The ledger's events, published as its own consumer publishes them (confirmed before the
    /// message is acknowledged). Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsSpec>,

    /// OpenTelemetry traces: one span per bulk, linked to each message's producer trace. Unset:
    /// nothing is exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
}

/// The ledger's document store (MongoDB 6-8, or anything that speaks its protocol).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    /// Secret key holding the mongodb:// or mongodb+srv:// URL (MONGODB_URL), credentials, TLS
    /// and write concern included.
    pub url_secret_ref: SecretKeyRef,
    /// The ledger's metadata database (its MONGO_TRANSACTION_NAME).
    #[serde(default = "default_mongo_database")]
    #[schemars(length(min = 1, max = 63))]
    pub database: String,
}

fn default_mongo_database() -> String {
    "transaction".into()
}

/// The exchanges of the ledger's events (durable topic exchanges the broker's definitions
/// declare; the recorder never declares them).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventsSpec {
    /// Exchange of the transaction events (`midaz.transaction.<STATUS>`), the ledger's
    /// RABBITMQ_TRANSACTION_EVENTS_EXCHANGE. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub transactions: Option<String>,
    /// Exchange of the overdraft events (`midaz.balance.overdraft.<action>`), the ledger's
    /// RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE. Unset: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub overdraft: Option<String>,
    /// The `version` the events carry (the ledger's VERSION). Unset: empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Where traces go (the standard OTEL_* variables of the recorder).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TracingSpec {
    /// The OTLP collector, e.g. http://otel-collector.observability:4317
    /// (OTEL_EXPORTER_OTLP_ENDPOINT).
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub endpoint: String,
    /// `grpc` (default) or `http/protobuf` (OTEL_EXPORTER_OTLP_PROTOCOL).
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// OTEL_TRACES_SAMPLER: `parentbased_always_on` (the SDK's default), `always_on`,
    /// `always_off`, `traceidratio`, `parentbased_traceidratio`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// OTEL_TRACES_SAMPLER_ARG, e.g. `0.1` for a ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler_arg: Option<String>,
}

/// The OTLP transport.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The value of OTEL_EXPORTER_OTLP_PROTOCOL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Monitoring objects the operator creates next to the recorders.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// A Prometheus Operator PodMonitor `<name>` scraping every recorder pod's /metrics (port
    /// `metrics`, 9090), with the label `bulkrecorder=<name>` on its series. Needs the
    /// monitoring.coreos.com/v1 CRDs: without them the PodMonitorReady condition says so and
    /// nothing else changes.
    #[serde(default)]
    pub pod_monitor: bool,

    /// Labels put on the PodMonitor, so that the Prometheus meant to scrape the recorders
    /// selects it: a Prometheus picks PodMonitors by label (kube-prometheus-stack's by
    /// `release: <its release name>`, unless its podMonitorSelectorNilUsesHelmValues is false).
    /// The operator's own labels (app.kubernetes.io/*) take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_monitor_labels: BTreeMap<String, String>,
}

/// The ledger's Redis, where the ledger keeps a backup of each transaction until a consumer has
/// stored it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Secret key holding the redis:// or rediss:// URL (REDIS_URL). With it, the recorder
    /// acknowledges the ledger's Redis backup of each transaction once its rows are committed,
    /// as the ledger's own consumer does.
    pub url_secret_ref: SecretKeyRef,
}

/// A Secret or a ConfigMap mounted read-only into the recorder container.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.secret) != has(self.configMap)").message(
    "a volume needs exactly one of secret and configMap"
))]
#[serde(rename_all = "camelCase")]
pub struct RecorderVolume {
    /// Volume name, unique among the volumes (a DNS-1123 label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Absolute path of the directory the files appear in.
    #[schemars(length(min = 2, max = 1024), regex(pattern = r"^/[^:]+$"))]
    pub mount_path: String,
    /// The Secret whose keys become files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// The ConfigMap whose keys become files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
}

/// How the recorder decodes message bodies.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    // No doc comments on the variants: they would turn the schema's plain `enum` into a `oneOf`.
    #[default]
    Auto,
    Json,
    Msgpack,
    Midaz,
}

impl MessageFormat {
    /// The value of BULK_RECORDER_MESSAGE_FORMAT.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Json => "json",
            Self::Msgpack => "msgpack",
            Self::Midaz => "midaz",
        }
    }
}

/// The RabbitMQ side.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RabbitMqSpec {
    /// Secret key holding the amqp:// or amqps:// URL (RABBITMQ_URL).
    pub url_secret_ref: SecretKeyRef,
    /// Queue the ledger publishes transactions to. Declared durable only when missing; an
    /// existing queue is used with its own arguments.
    #[schemars(length(min = 1, max = 255))]
    pub queue: String,
    /// Where rejected messages are published, with their reason in headers, before they are
    /// acknowledged. Unset: rejected messages are rejected without requeue (to the queue's own
    /// dead-letter exchange, when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
}

/// The recorder's own dead-lettering: each rejected message is published to `exchange` with the
/// headers x-bulk-recorder-reason, x-bulk-recorder-error and x-bulk-recorder-pod (its own
/// headers and properties kept), confirmed by the broker, then acknowledged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSpec {
    /// Exchange rejected messages are published to (BULK_RECORDER_DEAD_LETTER_EXCHANGE). It must
    /// exist; bind a queue to it to keep them.
    #[schemars(length(min = 1, max = 255))]
    pub exchange: String,
    /// Routing key they are published with (BULK_RECORDER_DEAD_LETTER_ROUTING_KEY). Unset: the
    /// recorder's default, the routing key the message arrived with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub routing_key: Option<String>,
}

/// The PostgreSQL side.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding the postgres:// URL (DATABASE_URL); `sslmode` is honoured.
    pub url_secret_ref: SecretKeyRef,
    /// Create the transaction and operation tables at start-up. false: write into tables the
    /// ledger already created.
    #[serde(default = "default_true")]
    pub migrate: bool,
}

/// A key of a Secret in the resource's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_replicas() -> i32 {
    1
}
fn default_workers() -> i32 {
    5
}
fn default_prefetch() -> i32 {
    10
}
fn default_flush_timeout_ms() -> i32 {
    100
}
fn default_max_rows_per_insert() -> i32 {
    1000
}
fn default_bulks_in_flight() -> i32 {
    2
}
fn default_statement_timeout_ms() -> i32 {
    10_000
}
fn default_shutdown_timeout_seconds() -> i32 {
    25
}
fn default_missing_parent_wait_ms() -> i32 {
    30_000
}
fn default_true() -> bool {
    true
}

impl BulkRecorderSpec {
    /// Messages per bulk: `size` when set, otherwise `workers * prefetch`.
    pub fn effective_size(&self) -> i64 {
        self.size
            .map(i64::from)
            .unwrap_or_else(|| i64::from(self.workers) * i64::from(self.prefetch))
    }

    /// What the schema cannot catch (it is skipped when the API server has no CEL, or an
    /// object predates the rule): the reason, for a Degraded condition.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let limit = i64::from(self.workers) * i64::from(self.prefetch);
        if let Some(size) = self.size
            && (size < 1 || i64::from(size) > limit)
        {
            problems.push(format!(
                "spec.size {size} is outside 1..={limit} (workers * prefetch): lower it or remove it"
            ));
        }
        for (field, value, range) in [
            ("replicas", self.replicas, 0..=100),
            ("workers", self.workers, 1..=256),
            ("prefetch", self.prefetch, 1..=65535),
            ("maxRowsPerInsert", self.max_rows_per_insert, 1..=2000),
            ("flushTimeoutMs", self.flush_timeout_ms, 1..=60000),
            ("bulksInFlight", self.bulks_in_flight, 1..=16),
            ("statementTimeoutMs", self.statement_timeout_ms, 1..=600_000),
            (
                "shutdownTimeoutSeconds",
                self.shutdown_timeout_seconds,
                1..=3600,
            ),
            (
                "missingParentWaitMs",
                self.missing_parent_wait_ms,
                0..=600_000,
            ),
        ] {
            if !range.contains(&value) {
                problems.push(format!(
                    "spec.{field} {value} is outside {}..={}",
                    range.start(),
                    range.end()
                ));
            }
        }
        if let Some(lock) = self.lock_timeout_ms
            && !(1..=self.statement_timeout_ms).contains(&lock)
        {
            problems.push(format!(
                "spec.lockTimeoutMs {lock} is outside 1..={} (spec.statementTimeoutMs): lower it",
                self.statement_timeout_ms
            ));
        }
        if let Some(dead_letter) = &self.rabbitmq.dead_letter
            && dead_letter.exchange.is_empty()
        {
            problems.push(
                "spec.rabbitmq.deadLetter.exchange is empty: name the exchange rejected messages go to, or remove deadLetter".into(),
            );
        }
        problems
    }
}
