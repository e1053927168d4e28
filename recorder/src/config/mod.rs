//! The recorder's configuration, read from the environment and checked once at start-up.
//!
//! Every value is range-checked: a bad value stops the program with one line that names the
//! variable, the value and what is accepted, instead of surfacing later as a stalled consumer.

pub mod connection_url;
pub mod redis_url;
pub mod tracing;
pub mod variables;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

pub use crate::config::connection_url::redact;
pub use crate::config::tracing::{OtlpProtocol, TracingConfig};
use crate::{
    broker::dead_letter,
    config::{
        connection_url::{UrlProblem, check_database_url, check_rabbitmq_url},
        redis_url::RedisTarget,
        variables::{Accepted, Default, variable},
    },
};

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

/// Everything the recorder needs to run; see docs/configuration.md.
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
    /// `BULK_RECORDER_SHUTDOWN_TIMEOUT_MS`: the whole shutdown's budget ([`crate::shutdown`]).
    pub shutdown_timeout: Duration,
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
    /// Names this process in its consumer tags and dead letters: `POD_NAME` when set, otherwise
    /// a random suffix (the process id is 1 in every container, so it tells nothing apart).
    pub instance: String,
    /// Where rejected messages are published with their reason; `None`: plain reject.
    pub dead_letter: Option<dead_letter::Target>,
    /// The ledger's Redis, whose backup entries are acknowledged after each commit.
    pub redis: Option<RedisConfig>,
    /// The ledger's document store, where its metadata goes.
    pub mongodb: Option<MongoConfig>,
    /// The ledger's events, when an exchange is named.
    pub events: Option<EventsSettings>,
    /// Traces, when an OTLP endpoint is named.
    pub tracing: Option<TracingConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoConfig {
    pub url: String,
    pub database: String,
}

/// Where the ledger's events go (an exchange per kind, `None`: that kind is off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSettings {
    pub transactions: Option<String>,
    pub overdraft: Option<String>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub target: RedisTarget,
    /// `REDIS_URL` with its password hidden, for logs.
    pub shown: String,
    /// The longest a bulk's acknowledgement waits for the cleanup.
    pub timeout: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads a given set of variables (the environment, or a test's map).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let rabbitmq_url = env.url(
            "RABBITMQ_URL",
            &["amqp://", "amqps://"],
            "set it to amqp://user:password@host:5672/vhost (amqps:// for TLS)",
            check_rabbitmq_url,
        )?;
        let workers = env.int("RABBITMQ_NUMBERS_OF_WORKERS")? as u16;
        let prefetch = env.int("RABBITMQ_NUMBERS_OF_PREFETCH")? as u16;
        // Both are read (and checked) whatever the first one says.
        let transaction_async = env.bool("RABBITMQ_TRANSACTION_ASYNC")?;
        let bulk_recorder_enabled = env.bool("BULK_RECORDER_ENABLED")?;
        let bulk_enabled = transaction_async && bulk_recorder_enabled;
        let bulk_size = bulk_size(&env, bulk_enabled, workers, prefetch)?;
        let (statement_timeout, lock_timeout) = timeouts(&env)?;
        let queue = env.required(
            "RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE",
            "set it to the name of the queue the ledger publishes transactions to",
        )?;
        Ok(Self {
            rabbitmq_url,
            dead_letter: dead_letter_target(&env, &queue)?,
            queue,
            workers,
            prefetch,
            bulk_enabled,
            bulk_size,
            flush_timeout: env.millis("BULK_RECORDER_FLUSH_TIMEOUT_MS")?,
            max_rows_per_insert: env.int("BULK_RECORDER_MAX_ROWS_PER_INSERT")? as usize,
            fallback_enabled: env.bool("BULK_RECORDER_FALLBACK_ENABLED")?,
            database_url: env.url(
                "DATABASE_URL",
                &["postgres://", "postgresql://"],
                "set it to postgres://user:password@host:5432/database (add ?sslmode=verify-full for TLS)",
                check_database_url,
            )?,
            migrate: env.bool("BULK_RECORDER_MIGRATE")?,
            max_message_bytes: env.int("BULK_RECORDER_MAX_MESSAGE_BYTES")? as usize,
            message_format: crate::message::Format::parse_setting(
                &env.choice("BULK_RECORDER_MESSAGE_FORMAT")?,
            )
            .expect("a choice of the table"),
            bulks_in_flight: env.int("BULK_RECORDER_BULKS_IN_FLIGHT")? as usize,
            missing_parent_wait: env.millis("BULK_RECORDER_MISSING_PARENT_WAIT_MS")?,
            shutdown_timeout: env.millis("BULK_RECORDER_SHUTDOWN_TIMEOUT_MS")?,
            log_format: match env.choice("LOG_FORMAT")?.as_str() {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            },
            metrics_addr: metrics_addr(&env)?,
            report: report_target(&env)?,
            statement_timeout,
            lock_timeout,
            instance: match env.get("POD_NAME") {
                Some(pod) => pod.to_string(),
                None => format!("{:08x}", fastrand::u32(..)),
            },
            redis: redis(&env)?,
            mongodb: mongodb(&env)?,
            events: events(&env),
            tracing: tracing::from_env(&env, bulk_size)?,
        })
    }
}

/// `BULK_RECORDER_SIZE`: a bulk can never hold more than the unacked messages the broker hands
/// out; 1 in one-by-one mode.
fn bulk_size(
    env: &Env,
    bulk_enabled: bool,
    workers: u16,
    prefetch: u16,
) -> Result<usize, ConfigError> {
    let unacked_limit = u64::from(workers) * u64::from(prefetch);
    let size = env.int_in("BULK_RECORDER_SIZE", 0, 0, u64::MAX)?;
    if size > unacked_limit {
        return Err(ConfigError::Invalid {
            var: "BULK_RECORDER_SIZE",
            value: size.to_string(),
            expected: format!(
                "0 (= workers x prefetch) or 1..={unacked_limit}: a bulk holds at most \
                 RABBITMQ_NUMBERS_OF_WORKERS x RABBITMQ_NUMBERS_OF_PREFETCH messages, the \
                 ledger's contract; raise either to make bulks larger"
            ),
        });
    }
    Ok(match (bulk_enabled, size) {
        (false, _) => 1,
        (true, 0) => unacked_limit as usize,
        (true, n) => n as usize,
    })
}

/// The statement and lock timeouts; the lock wait never above the statement's.
fn timeouts(env: &Env) -> Result<(Duration, Duration), ConfigError> {
    let statement = env.int("BULK_RECORDER_STATEMENT_TIMEOUT_MS")?;
    let Default::Explained(lock_default, _) = variable("BULK_RECORDER_LOCK_TIMEOUT_MS").default
    else {
        unreachable!("the lock timeout's default is explained")
    };
    let lock = env.int_in(
        "BULK_RECORDER_LOCK_TIMEOUT_MS",
        lock_default.min(statement),
        1,
        statement,
    )?;
    Ok((
        Duration::from_millis(statement),
        Duration::from_millis(lock),
    ))
}

fn metrics_addr(env: &Env) -> Result<SocketAddr, ConfigError> {
    let Default::Text(default) = variable("METRICS_ADDR").default else {
        unreachable!("an address")
    };
    let addr = env.text("METRICS_ADDR", default);
    addr.parse().map_err(|_| ConfigError::Invalid {
        var: "METRICS_ADDR",
        value: addr.clone(),
        expected: "an address like [::]:9090 or 0.0.0.0:9090".into(),
    })
}

fn report_target(env: &Env) -> Result<Option<ReportTarget>, ConfigError> {
    match (
        env.get("BULK_RECORDER_NAME"),
        env.get("POD_NAMESPACE"),
        env.get("POD_NAME"),
    ) {
        (Some(name), Some(namespace), Some(pod)) => Ok(Some(ReportTarget {
            name: name.into(),
            namespace: namespace.into(),
            pod: pod.into(),
        })),
        (None, _, _) => Ok(None),
        (Some(_), _, _) => Err(ConfigError::Missing {
            var: "POD_NAMESPACE/POD_NAME",
            hint: "BULK_RECORDER_NAME is set, so the pod's namespace and name are needed to \
                   report counts (set them from the downward API, or unset BULK_RECORDER_NAME)",
        }),
    }
}

/// Dead letters with reasons go to the exchange, by the routing key or else the message's own.
/// Refused when they would go back into `queue`: through the default exchange (which routes by
/// queue name), without a routing key (a message published there keeps the queue's name as its
/// routing key) or with the queue's own name.
fn dead_letter_target(env: &Env, queue: &str) -> Result<Option<dead_letter::Target>, ConfigError> {
    let Some(exchange) = env.0.get("BULK_RECORDER_DEAD_LETTER_EXCHANGE") else {
        return Ok(None);
    };
    let exchange = exchange.trim().to_string();
    let routing_key = env
        .get("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY")
        .map(str::to_string);
    if exchange.is_empty() && routing_key.as_deref().is_none_or(|key| key == queue) {
        return Err(ConfigError::Invalid {
            var: "BULK_RECORDER_DEAD_LETTER_ROUTING_KEY",
            value: routing_key.unwrap_or_default(),
            expected: format!(
                "the name of a dead-letter queue other than {queue:?}: with the default exchange \
                 (BULK_RECORDER_DEAD_LETTER_EXCHANGE=\"\") a dead letter is routed by this key to \
                 the queue of that name, and without it a message published through the default \
                 exchange would go back into the queue it came from"
            ),
        });
    }
    Ok(Some(dead_letter::Target {
        exchange,
        routing_key,
    }))
}

fn redis(env: &Env) -> Result<Option<RedisConfig>, ConfigError> {
    let Some(url) = env.get("REDIS_URL") else {
        return Ok(None);
    };
    let target =
        RedisTarget::parse(url).map_err(|UrlProblem { problem, fix }| ConfigError::Url {
            var: "REDIS_URL",
            value: redact(url),
            problem,
            fix,
        })?;
    Ok(Some(RedisConfig {
        target,
        shown: redact(url),
        timeout: env.millis("BULK_RECORDER_REDIS_TIMEOUT_MS")?,
    }))
}

fn mongodb(env: &Env) -> Result<Option<MongoConfig>, ConfigError> {
    let Some(url) = env.get("MONGODB_URL") else {
        return Ok(None);
    };
    let invalid = |problem: String| ConfigError::Url {
        var: "MONGODB_URL",
        value: redact(url),
        problem,
        fix: "set it to mongodb://user:password@host:27017/?tls=true (or mongodb+srv://...)",
    };
    if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) {
        return Err(invalid(
            "the scheme is neither mongodb:// nor mongodb+srv://".into(),
        ));
    }
    mongodb::options::ConnectionString::parse(url).map_err(|e| invalid(e.to_string()))?;
    let Default::Text(database) = variable("MONGODB_DATABASE").default else {
        unreachable!("a database name")
    };
    Ok(Some(MongoConfig {
        url: url.to_string(),
        database: env.text("MONGODB_DATABASE", database),
    }))
}

/// The ledger's events: a kind goes out when its exchange is named and its switch is not
/// `false` (as the ledger reads its switches: trimmed, any case).
fn events(env: &Env) -> Option<EventsSettings> {
    let exchange = |switch: &str, exchange: &str| {
        let off = env
            .get(switch)
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        env.get(exchange).filter(|_| !off).map(str::to_string)
    };
    let transactions = exchange(
        "RABBITMQ_TRANSACTION_EVENTS_ENABLED",
        "RABBITMQ_TRANSACTION_EVENTS_EXCHANGE",
    );
    let overdraft = exchange(
        "RABBITMQ_OVERDRAFT_EVENTS_ENABLED",
        "RABBITMQ_OVERDRAFT_EVENTS_EXCHANGE",
    );
    (transactions.is_some() || overdraft.is_some()).then(|| EventsSettings {
        transactions,
        overdraft,
        version: env.text("VERSION", ""),
    })
}

/// Typed access to the variables, producing the errors above.
pub(crate) struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    /// A set, non-blank value.
    fn get(&self, var: &str) -> Option<&str> {
        self.0.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())
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

    /// An integer with the table's default and range.
    fn int(&self, var: &'static str) -> Result<u64, ConfigError> {
        let variable = variable(var);
        let (Default::Int(default) | Default::Explained(default, _), Accepted::Range(min, max)) =
            (variable.default, variable.accepted)
        else {
            unreachable!("{var} is an integer with a range in the table")
        };
        self.int_in(var, default, min, max)
    }

    fn millis(&self, var: &'static str) -> Result<Duration, ConfigError> {
        self.int(var).map(Duration::from_millis)
    }

    /// An integer with a default and range that depend on other variables.
    fn int_in(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
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

    fn bool(&self, var: &'static str) -> Result<bool, ConfigError> {
        let Default::Bool(default) = variable(var).default else {
            unreachable!("{var} is a boolean in the table")
        };
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

    /// One of the table's values (case-insensitive).
    fn choice(&self, var: &'static str) -> Result<String, ConfigError> {
        let variable = variable(var);
        let (Default::Text(default), Accepted::OneOf(values)) =
            (variable.default, variable.accepted)
        else {
            unreachable!("{var} is a choice in the table")
        };
        let raw = self.text(var, default).to_ascii_lowercase();
        if values.contains(&raw.as_str()) {
            return Ok(raw);
        }
        let expected = match values {
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
            [] => String::new(),
        };
        Err(ConfigError::Invalid {
            var,
            value: self.text(var, default),
            expected,
        })
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
    fn a_dead_letter_that_would_loop_into_its_own_queue_is_refused() {
        let base = [
            ("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/%2f"),
            ("RABBITMQ_TRANSACTION_BALANCE_OPERATION_QUEUE", "ledger"),
            ("DATABASE_URL", "postgres://localhost/ledger"),
            ("BULK_RECORDER_DEAD_LETTER_EXCHANGE", ""),
        ];
        let with = |key: Option<&str>| {
            let mut all = base.to_vec();
            if let Some(key) = key {
                all.push(("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY", key));
            }
            Config::from_vars(&vars(&all))
        };
        for looping in [None, Some("ledger")] {
            let error = with(looping).unwrap_err().to_string();
            assert!(
                error.starts_with("BULK_RECORDER_DEAD_LETTER_ROUTING_KEY=")
                    && error.contains("go back into the queue it came from"),
                "{error}"
            );
        }
        let target = with(Some("ledger.dlq")).unwrap().dead_letter.unwrap();
        assert_eq!(
            (target.exchange.as_str(), target.routing_key.as_deref()),
            ("", Some("ledger.dlq"))
        );
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
