//! The recorder's configuration, read from the environment and checked once at start-up.
//!
//! Every value is range-checked: a bad value stops the program with one line that names the
//! variable, the value and what is accepted, instead of surfacing later as a stalled consumer.

pub mod connection_url;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

pub use crate::config::connection_url::redact;
use crate::config::connection_url::{UrlProblem, check_database_url, check_rabbitmq_url};

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is required: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("{var}={value:?} is invalid: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: String,
    },
    #[error("{var}={value:?} is invalid: {problem}; {fix}")]
    Url {
        var: &'static str,
        /// With its passwords hidden.
        value: String,
        problem: String,
        fix: &'static str,
    },
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the recorder reports its counts when it runs inside a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

/// Everything the recorder needs to run; see the README's configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub rabbitmq_url: String,
    pub queue: String,
    pub workers: u16,
    pub prefetch: u16,
    /// True only when both `RABBITMQ_TRANSACTION_ASYNC` and `BULK_RECORDER_ENABLED` are true.
    pub bulk_enabled: bool,
    /// Messages per bulk; `workers x prefetch` unless set. 1 in one-by-one mode.
    pub bulk_size: usize,
    pub flush_timeout: Duration,
    pub max_rows_per_insert: usize,
    pub fallback_enabled: bool,
    pub database_url: String,
    pub migrate: bool,
    pub max_message_bytes: usize,
    /// `BULK_RECORDER_MESSAGE_FORMAT`: `None` is `auto` (decided per message from its body).
    pub message_format: Option<crate::message::Format>,
    /// How long a transaction whose parent is not stored yet is retried before it is rejected
    /// as `missing_parent`.
    pub missing_parent_wait: Duration,
    /// Bulks written at once (each on a connection of its own), while the next is collected.
    pub bulks_in_flight: usize,
    pub log_format: LogFormat,
    /// `METRICS_ADDR`; the default `[::]` falls back to `0.0.0.0` where IPv6 is unavailable.
    pub metrics_addr: SocketAddr,
    pub report: Option<ReportTarget>,
    /// PostgreSQL's `statement_timeout` for every connection of the recorder: no statement runs
    /// longer, so a stalled write becomes a transient error instead of a stalled pipeline.
    pub statement_timeout: Duration,
    /// PostgreSQL's `lock_timeout`: the longest a statement waits for a lock (never above
    /// `statement_timeout`, which would make it pointless).
    pub lock_timeout: Duration,
    /// Names this process in its consumer tags: `POD_NAME` when set, otherwise a random
    /// suffix (the process id is 1 in every container, so it tells nothing apart).
    pub instance: String,
}

/// Upper bound of `BULK_RECORDER_MAX_ROWS_PER_INSERT`: 2000 rows x 30 columns of the widest
/// table stays under PostgreSQL's 65535 bind parameters, the limit of a multi-row VALUES.
pub const MAX_ROWS_PER_INSERT_LIMIT: usize = 2000;

/// 10 s: a bulk of 2000 rows takes well under a second; anything near this is a stall, and
/// flush timeout + one statement must still fit Kubernetes' default 30 s grace period.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 10_000;
pub const MAX_STATEMENT_TIMEOUT_MS: u64 = 600_000;
/// 5 s: long enough for row locks held by another writer's bulk, short enough to give up on a
/// table locked by maintenance and retry later (the retry backs off).
pub const DEFAULT_LOCK_TIMEOUT_MS: u64 = 5_000;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads a given set of variables (the environment, or a test's map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let workers = env.int("RABBITMQ_NUMBERS_OF_WORKERS", 5, 1, 256)? as u16;
        let prefetch = env.int("RABBITMQ_NUMBERS_OF_PREFETCH", 10, 1, 65535)? as u16;
        // Both are read (and checked) whatever the first one says.
        let transaction_async = env.bool("RABBITMQ_TRANSACTION_ASYNC", true)?;
        let bulk_recorder_enabled = env.bool("BULK_RECORDER_ENABLED", true)?;
        let bulk_enabled = transaction_async && bulk_recorder_enabled;
        // A bulk can never hold more than the unacked messages the broker hands out.
        let unacked_limit = u64::from(workers) * u64::from(prefetch);
        let size = env.int("BULK_RECORDER_SIZE", 0, 0, u64::MAX)?;
        if size > unacked_limit {
            return Err(ConfigError::Invalid {
                var: "BULK_RECORDER_SIZE",
                value: size.to_string(),
                expected: format!(
                    "0 (= workers x prefetch) or 1..={unacked_limit}: the broker never hands out more \
                     than RABBITMQ_NUMBERS_OF_WORKERS x RABBITMQ_NUMBERS_OF_PREFETCH unacked messages, \
                     so a larger bulk would only ever flush on the timeout"
                ),
            });
        }
        let bulk_size = match (bulk_enabled, size) {
            (false, _) => 1,
            (true, 0) => unacked_limit as usize,
            (true, n) => n as usize,
        };
        let metrics_addr = env.text("METRICS_ADDR", "[::]:9090");
        let metrics_addr = metrics_addr.parse().map_err(|_| ConfigError::Invalid {
            var: "METRICS_ADDR",
            value: metrics_addr.clone(),
            expected: "an address like [::]:9090 or 0.0.0.0:9090".into(),
        })?;
        let statement_timeout_ms = env.int(
            "BULK_RECORDER_STATEMENT_TIMEOUT_MS",
            DEFAULT_STATEMENT_TIMEOUT_MS,
            1,
            MAX_STATEMENT_TIMEOUT_MS,
        )?;
        let lock_timeout_ms = env.int(
            "BULK_RECORDER_LOCK_TIMEOUT_MS",
            DEFAULT_LOCK_TIMEOUT_MS.min(statement_timeout_ms),
            1,
            statement_timeout_ms,
        )?;
        let instance = match env.get("POD_NAME") {
            Some(pod) => pod.to_string(),
            None => format!("{:08x}", fastrand::u32(..)),
        };
        let log_format = match env.text("LOG_FORMAT", "text").as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::Invalid {
                    var: "LOG_FORMAT",
                    value: other.into(),
                    expected: "text or json".into(),
                });
            }
        };
        let report = match (
            env.get("BULK_RECORDER_NAME"),
            env.get("POD_NAMESPACE"),
            env.get("POD_NAME"),
        ) {
            (Some(name), Some(namespace), Some(pod)) => Some(ReportTarget {
                name: name.into(),
                namespace: namespace.into(),
                pod: pod.into(),
            }),
            (None, _, _) => None,
            (Some(_), _, _) => {
                return Err(ConfigError::Missing {
                    var: "POD_NAMESPACE/POD_NAME",
                    hint: "BULK_RECORDER_NAME is set, so the pod's namespace and name are needed to \
                           report counts (set them from the downward API, or unset BULK_RECORDER_NAME)",
                });
            }
        };
        Ok(Self {
            rabbitmq_url: env.url(
                "RABBITMQ_URL",
                &["amqp://", "amqps://"],
                "set it to amqp://user:password@host:5672/vhost (amqps:// for TLS)",
                check_rabbitmq_url,
            )?,
            queue: env.required(
                "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
                "set it to the name of the queue the ledger publishes transactions to",
            )?,
            workers,
            prefetch,
            bulk_enabled,
            bulk_size,
            flush_timeout: Duration::from_millis(env.int("BULK_RECORDER_FLUSH_TIMEOUT_MS", 100, 1, 60_000)?),
            max_rows_per_insert: env.int(
                "BULK_RECORDER_MAX_ROWS_PER_INSERT",
                1000,
                1,
                MAX_ROWS_PER_INSERT_LIMIT as u64,
            )? as usize,
            fallback_enabled: env.bool("BULK_RECORDER_FALLBACK_ENABLED", true)?,
            database_url: env.url(
                "DATABASE_URL",
                &["postgres://", "postgresql://"],
                "set it to postgres://user:password@host:5432/database (add ?sslmode=verify-full for TLS)",
                check_database_url,
            )?,
            migrate: env.bool("BULK_RECORDER_MIGRATE", true)?,
            max_message_bytes: env.int("BULK_RECORDER_MAX_MESSAGE_BYTES", 1_048_576, 1, 134_217_728)? as usize,
            message_format: env.message_format()?,
            bulks_in_flight: env.int("BULK_RECORDER_BULKS_IN_FLIGHT", 2, 1, 16)? as usize,
            missing_parent_wait: Duration::from_millis(env.int(
                "BULK_RECORDER_MISSING_PARENT_WAIT_MS",
                30_000,
                0,
                600_000,
            )?),
            log_format,
            metrics_addr,
            report,
            statement_timeout: Duration::from_millis(statement_timeout_ms),
            lock_timeout: Duration::from_millis(lock_timeout_ms),
            instance,
        })
    }
}

/// Typed access to the variables, producing the errors above.
struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-blank value.
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn message_format(&self) -> Result<Option<crate::message::Format>, ConfigError> {
        let raw = self.text("BULK_RECORDER_MESSAGE_FORMAT", "auto");
        crate::message::Format::parse_setting(&raw).map_err(|_| ConfigError::Invalid {
            var: "BULK_RECORDER_MESSAGE_FORMAT",
            value: raw,
            expected: "auto, json, msgpack or midaz".into(),
        })
    }

    fn text(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    fn required(&self, var: &'static str, hint: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_string)
            .ok_or(ConfigError::Missing { var, hint })
    }

    fn url(
        &self,
        var: &'static str,
        schemes: &[&str],
        hint: &'static str,
        check: fn(&str) -> Result<(), UrlProblem>,
    ) -> Result<String, ConfigError> {
        let value = self.required(var, hint)?;
        if !schemes.iter().any(|s| value.starts_with(s)) {
            return Err(ConfigError::Invalid {
                var,
                value: redact(&value),
                expected: format!("a URL starting with {}", schemes.join(" or ")),
            });
        }
        check(&value).map_err(|UrlProblem { problem, fix }| ConfigError::Url {
            var,
            value: redact(&value),
            problem,
            fix,
        })?;
        Ok(value)
    }

    fn int(&self, var: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                var,
                value: raw.into(),
                expected: if max == u64::MAX {
                    format!("an integer >= {min}")
                } else {
                    format!("an integer in {min}..={max}")
                },
            }),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                var,
                value: raw.into(),
                expected: "true or false".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = [
            ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            (
                "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
                "transactions",
            ),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            map.insert(k.to_string(), v.to_string());
        }
        map
    }

    #[test]
    fn defaults_follow_the_reference_ledger() {
        let config = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!((config.workers, config.prefetch), (5, 10));
        assert!(config.bulk_enabled);
        assert_eq!(config.bulk_size, 50, "workers x prefetch");
        assert_eq!(config.flush_timeout, Duration::from_millis(100));
        assert_eq!(config.max_rows_per_insert, 1000);
        assert!(config.fallback_enabled && config.migrate);
        assert_eq!(config.max_message_bytes, 1 << 20);
        assert_eq!(config.report, None);
        assert_eq!(config.statement_timeout, Duration::from_secs(10));
        assert_eq!(config.lock_timeout, Duration::from_secs(5));
        assert_eq!(config.metrics_addr, "[::]:9090".parse().unwrap());
    }

    #[test]
    fn timeouts_are_range_checked_and_the_lock_wait_stays_below_the_statement() {
        let config = Config::from_vars(&vars(&[
            ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "2000"),
            ("BULK_RECORDER_LOCK_TIMEOUT_MS", "1500"),
        ]))
        .unwrap();
        assert_eq!(
            (config.statement_timeout, config.lock_timeout),
            (Duration::from_millis(2000), Duration::from_millis(1500))
        );
        // A short statement timeout lowers the default lock timeout with it.
        let config =
            Config::from_vars(&vars(&[("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "800")])).unwrap();
        assert_eq!(config.lock_timeout, Duration::from_millis(800));
        for (pairs, expected) in [
            (
                vec![("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "0")],
                "BULK_RECORDER_STATEMENT_TIMEOUT_MS=\"0\" is invalid: expected an integer in 1..=600000",
            ),
            (
                vec![
                    ("BULK_RECORDER_STATEMENT_TIMEOUT_MS", "2000"),
                    ("BULK_RECORDER_LOCK_TIMEOUT_MS", "3000"),
                ],
                "BULK_RECORDER_LOCK_TIMEOUT_MS=\"3000\" is invalid: expected an integer in 1..=2000",
            ),
        ] {
            let err = Config::from_vars(&vars(&pairs)).unwrap_err().to_string();
            assert_eq!(err, expected);
        }
    }

    #[test]
    fn an_invalid_bulk_switch_is_refused_even_when_async_is_off() {
        let err = Config::from_vars(&vars(&[
            ("RABBITMQ_TRANSACTION_ASYNC", "false"),
            ("BULK_RECORDER_ENABLED", "maybe"),
        ]))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "BULK_RECORDER_ENABLED=\"maybe\" is invalid: expected true or false"
        );
    }

    #[test]
    fn urls_that_can_never_connect_are_refused_with_the_fix() {
        let err = Config::from_vars(&vars(&[(
            "DATABASE_URL",
            "postgres://postgres:secret@127.0.0.1:99999/x",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "DATABASE_URL=\"postgres://postgres:***@127.0.0.1:99999/x\" is invalid: invalid port number; expected postgres://"
            ),
            "{err}"
        );
        let err = Config::from_vars(&vars(&[("RABBITMQ_URL", "amqp://guest:guest@h/")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("RABBITMQ_URL=\"amqp://guest:***@h/\" is invalid: the vhost is empty"),
            "{err}"
        );
        assert!(err.contains("%2f"), "{err}");
    }

    #[test]
    fn the_instance_is_the_pod_name_or_random() {
        let config = Config::from_vars(&vars(&[("POD_NAME", "orders-7d9f-x2")])).unwrap();
        assert_eq!(config.instance, "orders-7d9f-x2");
        let (a, b) = (
            Config::from_vars(&vars(&[])).unwrap().instance,
            Config::from_vars(&vars(&[])).unwrap().instance,
        );
        assert_ne!(
            a, b,
            "two processes without a pod name get different instances"
        );
        assert_ne!(a, std::process::id().to_string());
    }

    #[test]
    fn explicit_size_within_the_unacked_limit_is_kept() {
        let config = Config::from_vars(&vars(&[("BULK_RECORDER_SIZE", "20")])).unwrap();
        assert_eq!(config.bulk_size, 20);
    }

    #[test]
    fn size_above_workers_times_prefetch_is_refused_with_the_reason() {
        let err = Config::from_vars(&vars(&[
            ("RABBITMQ_NUMBERS_OF_WORKERS", "2"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "3"),
            ("BULK_RECORDER_SIZE", "7"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("BULK_RECORDER_SIZE=\"7\" is invalid"),
            "{err}"
        );
        assert!(err.contains("1..=6"), "{err}");
    }

    #[test]
    fn either_switch_off_means_one_by_one() {
        for var in ["RABBITMQ_TRANSACTION_ASYNC", "BULK_RECORDER_ENABLED"] {
            let config = Config::from_vars(&vars(&[(var, "false")])).unwrap();
            assert!(!config.bulk_enabled, "{var}=false");
            assert_eq!(config.bulk_size, 1);
        }
    }

    #[test]
    fn out_of_range_values_name_the_variable_value_and_range() {
        let cases = [
            ("RABBITMQ_NUMBERS_OF_WORKERS", "0", "1..=256"),
            ("RABBITMQ_NUMBERS_OF_PREFETCH", "70000", "1..=65535"),
            ("BULK_RECORDER_FLUSH_TIMEOUT_MS", "abc", "1..=60000"),
            ("BULK_RECORDER_MAX_ROWS_PER_INSERT", "2001", "1..=2000"),
            ("BULK_RECORDER_FALLBACK_ENABLED", "maybe", "true or false"),
            ("LOG_FORMAT", "xml", "text or json"),
        ];
        for (var, value, expected) in cases {
            let err = Config::from_vars(&vars(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("{var}={value:?} is invalid: expected an integer in {expected}")
                    .replace("an integer in true or false", "true or false")
                    .replace("an integer in text or json", "text or json")
            );
        }
    }

    #[test]
    fn missing_urls_say_how_to_fix_them() {
        let mut map = vars(&[]);
        map.remove("DATABASE_URL");
        let err = Config::from_vars(&map).unwrap_err().to_string();
        assert!(
            err.starts_with("DATABASE_URL is required: set it to postgres://"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_scheme_is_refused_without_printing_the_password() {
        let err = Config::from_vars(&vars(&[("RABBITMQ_URL", "http://user:secret@host")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("amqp:// or amqps://"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn reporting_needs_the_pod_identity() {
        let err = Config::from_vars(&vars(&[("BULK_RECORDER_NAME", "orders")])).unwrap_err();
        assert!(matches!(err, ConfigError::Missing { .. }));
        let config = Config::from_vars(&vars(&[
            ("BULK_RECORDER_NAME", "orders"),
            ("POD_NAMESPACE", "ledger"),
            ("POD_NAME", "orders-abc"),
        ]))
        .unwrap();
        assert_eq!(config.report.unwrap().pod, "orders-abc");
    }
}
