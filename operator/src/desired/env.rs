//! The recorder container's environment: docs/configuration.md's variables, filled from the spec.

use bulk_recorder_crds::{BulkRecorder, SecretKeyRef};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};
use kube::ResourceExt;

use super::METRICS_PORT;

fn env(name: &str, value: impl ToString) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

fn env_from_secret(name: &str, secret: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env_from_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The recorder's environment (docs/configuration.md's variables), the derived size included.
pub fn recorder_env(br: &BulkRecorder) -> Vec<EnvVar> {
    let spec = &br.spec;
    let mut vars = vec![
        env_from_secret("RABBITMQ_URL", &spec.rabbitmq.url_secret_ref),
        env(
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            &spec.rabbitmq.queue,
        ),
        env("RABBITMQ_NUMBERS_OF_WORKERS", spec.workers),
        env("RABBITMQ_NUMBERS_OF_PREFETCH", spec.prefetch),
        env("RABBITMQ_TRANSACTION_ASYNC", true),
        env("BULK_RECORDER_ENABLED", spec.bulk_enabled),
        env("BULK_RECORDER_SIZE", spec.effective_size()),
        env("BULK_RECORDER_FLUSH_TIMEOUT_MS", spec.flush_timeout_ms),
        env(
            "BULK_RECORDER_MAX_ROWS_PER_INSERT",
            spec.max_rows_per_insert,
        ),
        env("BULK_RECORDER_FALLBACK_ENABLED", spec.fallback_enabled),
        env("BULK_RECORDER_MESSAGE_FORMAT", spec.message_format.as_str()),
        env("BULK_RECORDER_BULKS_IN_FLIGHT", spec.bulks_in_flight),
        env(
            "BULK_RECORDER_STATEMENT_TIMEOUT_MS",
            spec.statement_timeout_ms,
        ),
        env(
            "BULK_RECORDER_MISSING_PARENT_WAIT_MS",
            spec.missing_parent_wait_ms,
        ),
        env(
            "BULK_RECORDER_SHUTDOWN_TIMEOUT_MS",
            i64::from(spec.shutdown_timeout_seconds) * 1000,
        ),
        env_from_secret("DATABASE_URL", &spec.postgres.url_secret_ref),
        env("BULK_RECORDER_MIGRATE", spec.postgres.migrate),
        env("LOG_FORMAT", "json"),
        // IPv6 and IPv4 (the recorder falls back to 0.0.0.0 where IPv6 is off).
        env("METRICS_ADDR", format!("[::]:{METRICS_PORT}")),
        env("BULK_RECORDER_NAME", br.name_any()),
        env_from_field("POD_NAMESPACE", "metadata.namespace"),
        env_from_field("POD_NAME", "metadata.name"),
    ];
    if let Some(lock) = spec.lock_timeout_ms {
        vars.push(env("BULK_RECORDER_LOCK_TIMEOUT_MS", lock));
    }
    if let Some(redis) = &spec.redis {
        vars.push(env_from_secret("REDIS_URL", &redis.url_secret_ref));
    }
    if let Some(dead_letter) = &spec.rabbitmq.dead_letter {
        vars.push(env(
            "BULK_RECORDER_DEAD_LETTER_EXCHANGE",
            &dead_letter.exchange,
        ));
        if let Some(key) = &dead_letter.routing_key {
            vars.push(env("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", key));
        }
    }
    vars.extend(drop_in_env(br));
    vars
}

/// What the ledger's own consumer does besides rows: its document store, its events, traces.
fn drop_in_env(br: &BulkRecorder) -> Vec<EnvVar> {
    let spec = &br.spec;
    let mut vars = Vec::new();
    if let Some(mongodb) = &spec.mongodb {
        vars.push(env_from_secret("MONGODB_URL", &mongodb.url_secret_ref));
        vars.push(env("MONGODB_DATABASE", &mongodb.database));
    }
    if let Some(events) = &spec.events {
        for (name, value) in [
            ("RABBITMQ_TRANSACTION_EVENTS_EXCHANGE", &events.transactions),
            ("RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE", &events.overdraft),
            ("VERSION", &events.version),
        ] {
            vars.extend(value.as_ref().map(|value| env(name, value)));
        }
    }
    if let Some(tracing) = &spec.tracing {
        vars.push(env("OTEL_EXPORTER_OTLP_ENDPOINT", &tracing.endpoint));
        vars.push(env(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            tracing.protocol.as_str(),
        ));
        vars.push(env("OTEL_SERVICE_NAME", "bulk-recorder"));
        vars.push(env(
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("bulkrecorder={}", br.name_any()),
        ));
        for (name, value) in [
            ("OTEL_TRACES_SAMPLER", &tracing.sampler),
            ("OTEL_TRACES_SAMPLER_ARG", &tracing.sampler_arg),
        ] {
            vars.extend(value.as_ref().map(|value| env(name, value)));
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::bulk_recorder;
    use bulk_recorder_crds::{DeadLetterSpec, RedisSpec};

    fn value(br: &BulkRecorder, name: &str) -> Option<String> {
        recorder_env(br)
            .into_iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value)
    }

    #[test]
    fn the_message_format_reaches_the_recorder() {
        let mut br = bulk_recorder("orders", "ledger");
        assert_eq!(
            value(&br, "BULK_RECORDER_MESSAGE_FORMAT").as_deref(),
            Some("auto")
        );
        br.spec.message_format = bulk_recorder_crds::MessageFormat::Midaz;
        assert_eq!(
            value(&br, "BULK_RECORDER_MESSAGE_FORMAT").as_deref(),
            Some("midaz")
        );
    }

    /// Redis's URL is a secret like the others; the dead-letter target is plain configuration,
    /// and absent settings are absent variables (the recorder's own defaults apply).
    #[test]
    fn redis_and_the_dead_letter_target_reach_the_recorder_only_when_set() {
        let mut br = bulk_recorder("orders", "ledger");
        let names = |br: &BulkRecorder| -> Vec<String> {
            recorder_env(br).into_iter().map(|e| e.name).collect()
        };
        for absent in [
            "REDIS_URL",
            "BULK_RECORDER_DEAD_LETTER_EXCHANGE",
            "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY",
        ] {
            assert!(!names(&br).contains(&absent.to_string()), "{absent}");
        }
        br.spec.redis = Some(RedisSpec {
            url_secret_ref: SecretKeyRef {
                name: "ledger-redis".into(),
                key: "url".into(),
            },
        });
        br.spec.rabbitmq.dead_letter = Some(DeadLetterSpec {
            exchange: "ledger.rejected".into(),
            routing_key: None,
        });
        let redis = recorder_env(&br)
            .into_iter()
            .find(|e| e.name == "REDIS_URL")
            .expect("REDIS_URL");
        assert_eq!(redis.value, None, "never a plain value");
        let source = redis.value_from.unwrap().secret_key_ref.unwrap();
        assert_eq!(
            (source.name.as_str(), source.key.as_str()),
            ("ledger-redis", "url")
        );
        assert_eq!(
            value(&br, "BULK_RECORDER_DEAD_LETTER_EXCHANGE").as_deref(),
            Some("ledger.rejected")
        );
        assert!(!names(&br).contains(&"BULK_RECORDER_DEAD_LETTER_ROUTING_KEY".to_string()));
        br.spec.rabbitmq.dead_letter.as_mut().unwrap().routing_key = Some("rejected".into());
        assert_eq!(
            value(&br, "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY").as_deref(),
            Some("rejected")
        );
    }
}
