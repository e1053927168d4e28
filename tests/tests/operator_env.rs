//! The contract between the operator and the recorder: the environment the operator gives a
//! recorder pod is one the recorder accepts, and means what the spec says.

use std::collections::HashMap;

use bulk_recorder::config::Config;
use bulk_recorder_crds::{BulkRecorder, MessageFormat};

/// The variables of the recorder container, with the values a pod would see for those that
/// come from Secrets and the downward API.
fn pod_env(br: &BulkRecorder) -> HashMap<String, String> {
    bulk_recorder_operator::desired::recorder_env(br)
        .into_iter()
        .map(|var| {
            let value = var.value.unwrap_or_else(|| match var.name.as_str() {
                "RABBITMQ_URL" => "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                "DATABASE_URL" => "postgres://postgres@127.0.0.1:5432/ledger".into(),
                "REDIS_URL" => "redis://127.0.0.1:6379/0".into(),
                "MONGODB_URL" => "mongodb://ledger:secret@127.0.0.1:27017/?w=majority".into(),
                "POD_NAMESPACE" => "ledger".into(),
                "POD_NAME" => "orders-7d9f-abcde".into(),
                other => panic!("{other} has neither a value nor a known source"),
            });
            (var.name, value)
        })
        .collect()
}

fn sample(spec: serde_json::Value) -> BulkRecorder {
    let mut object = serde_json::json!({
        "apiVersion": "bulkrecorder.io/v1alpha1",
        "kind": "BulkRecorder",
        "metadata": {"name": "orders", "namespace": "ledger"},
        "spec": {
            "rabbitmq": {"urlSecretRef": {"name": "rabbitmq", "key": "url"}, "queue": "transactions"},
            "postgres": {"urlSecretRef": {"name": "postgres", "key": "url"}}
        }
    });
    for (key, value) in spec.as_object().expect("fields") {
        object["spec"][key] = value.clone();
    }
    serde_json::from_value(object).expect("a BulkRecorder")
}

#[test]
fn the_defaults_give_the_recorder_its_own_defaults() {
    let config = Config::from_vars(&pod_env(&sample(serde_json::json!({})))).expect("accepted");
    assert_eq!(
        (config.workers, config.prefetch, config.bulk_size),
        (5, 10, 50)
    );
    assert_eq!(config.bulks_in_flight, 2);
    assert_eq!(config.statement_timeout.as_millis(), 10_000);
    assert_eq!(config.lock_timeout.as_millis(), 5_000);
    assert_eq!(config.missing_parent_wait.as_millis(), 30_000);
    assert_eq!(
        config.shutdown_timeout.as_secs(),
        25,
        "spec.shutdownTimeoutSeconds' default"
    );
    assert_eq!(config.message_format, None, "auto");
    assert_eq!(config.instance, "orders-7d9f-abcde");
    assert_eq!(config.report.expect("reports").name, "orders");
}

#[test]
fn every_tuning_field_reaches_the_recorder() {
    let br = sample(serde_json::json!({
        "workers": 4, "prefetch": 1000, "size": 1000, "maxRowsPerInsert": 2000,
        "bulksInFlight": 3, "statementTimeoutMs": 20000, "lockTimeoutMs": 2000,
        "missingParentWaitMs": 1000, "flushTimeoutMs": 250, "messageFormat": "midaz",
        "fallbackEnabled": false, "shutdownTimeoutSeconds": 90
    }));
    assert_eq!(br.spec.message_format, MessageFormat::Midaz);
    let config = Config::from_vars(&pod_env(&br)).expect("accepted");
    assert_eq!(
        (config.workers, config.prefetch, config.bulk_size),
        (4, 1000, 1000)
    );
    assert_eq!(config.max_rows_per_insert, 2000);
    assert_eq!(config.bulks_in_flight, 3);
    assert_eq!(config.statement_timeout.as_millis(), 20_000);
    assert_eq!(config.lock_timeout.as_millis(), 2_000);
    assert_eq!(config.missing_parent_wait.as_millis(), 1_000);
    assert_eq!(config.flush_timeout.as_millis(), 250);
    assert_eq!(config.shutdown_timeout.as_secs(), 90);
    assert_eq!(
        config.message_format,
        Some(bulk_recorder::message::Format::Midaz)
    );
    assert!(!config.fallback_enabled);
    assert!(config.bulk_enabled);
}

/// The ledger's Redis and the recorder's own dead-lettering: the operator passes Redis's URL from
/// its Secret (never as a plain value) and the dead-letter target as plain variables, only when
/// the spec sets them, and the recorder starts with them.
#[test]
fn redis_and_the_dead_letter_target_reach_the_recorder() {
    let plain = pod_env(&sample(serde_json::json!({})));
    for absent in [
        "REDIS_URL",
        "BULK_RECORDER_DEAD_LETTER_EXCHANGE",
        "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY",
    ] {
        assert!(
            !plain.contains_key(absent),
            "{absent} set without the spec asking"
        );
    }
    let br = sample(serde_json::json!({
        "redis": {"urlSecretRef": {"name": "ledger-redis", "key": "url"}},
        "rabbitmq": {"urlSecretRef": {"name": "rabbitmq", "key": "url"}, "queue": "transactions",
            "deadLetter": {"exchange": "ledger.rejected", "routingKey": "rejected"}}
    }));
    let redis = bulk_recorder_operator::desired::recorder_env(&br)
        .into_iter()
        .find(|v| v.name == "REDIS_URL")
        .expect("REDIS_URL");
    assert_eq!(
        redis.value, None,
        "a connection string is never a plain value"
    );
    let source = redis.value_from.unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (source.name.as_str(), source.key.as_str()),
        ("ledger-redis", "url")
    );
    let vars = pod_env(&br);
    assert_eq!(
        vars["BULK_RECORDER_DEAD_LETTER_EXCHANGE"],
        "ledger.rejected"
    );
    assert_eq!(vars["BULK_RECORDER_DEAD_LETTER_ROUTING_KEY"], "rejected");
    let config = Config::from_vars(&vars).expect("accepted");
    assert_eq!(
        config.workers, 5,
        "the rest of the environment is unchanged"
    );
    let redis = config.redis.expect("REDIS_URL read");
    assert_eq!(
        redis.target,
        bulk_recorder::config::redis_url::RedisTarget::Server("redis://127.0.0.1:6379/0".into())
    );
    assert_eq!(
        config.dead_letter,
        Some(bulk_recorder::broker::dead_letter::Target {
            exchange: "ledger.rejected".into(),
            routing_key: Some("rejected".into()),
        })
    );
    // Without a routing key, the message's own (as the CRD documents it).
    let br = sample(serde_json::json!({
        "rabbitmq": {"urlSecretRef": {"name": "rabbitmq", "key": "url"}, "queue": "transactions",
            "deadLetter": {"exchange": "ledger.rejected"}}
    }));
    let config = Config::from_vars(&pod_env(&br)).expect("accepted");
    assert_eq!(config.dead_letter.expect("a target").routing_key, None);
}

/// spec.mongodb, spec.events and spec.tracing become variables the recorder accepts and reads
/// as the spec says.
#[test]
fn the_document_store_events_and_tracing_mean_what_the_spec_says() {
    let config = Config::from_vars(&pod_env(&sample(serde_json::json!({
        "mongodb": {"urlSecretRef": {"name": "mongo", "key": "url"}, "database": "ledger_meta"},
        "events": {"transactions": "tx.events", "overdraft": "od.events", "version": "v4.0.0"},
        "tracing": {"endpoint": "http://otel:4318", "protocol": "http/protobuf",
                    "sampler": "parentbased_traceidratio", "samplerArg": "0.5"}
    }))))
    .expect("accepted");
    let mongo = config.mongodb.expect("a document store");
    assert_eq!(mongo.database, "ledger_meta");
    assert!(mongo.url.contains("w=majority"));
    let events = config.events.expect("events");
    assert_eq!(
        (
            events.transactions.as_deref(),
            events.overdraft.as_deref(),
            events.version.as_str()
        ),
        (Some("tx.events"), Some("od.events"), "v4.0.0")
    );
    let tracing = config.tracing.expect("traces");
    assert_eq!(tracing.endpoint, "http://otel:4318/v1/traces");
    assert_eq!(
        tracing.protocol,
        bulk_recorder::config::OtlpProtocol::HttpProtobuf
    );
    assert_eq!(
        (tracing.sampler.as_str(), tracing.sampler_arg.as_deref()),
        ("parentbased_traceidratio", Some("0.5"))
    );
    let plain = Config::from_vars(&pod_env(&sample(serde_json::json!({})))).unwrap();
    assert!(plain.mongodb.is_none() && plain.events.is_none() && plain.tracing.is_none());
}
