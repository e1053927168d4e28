//! The two connection URLs, checked at start-up, and their passwords hidden before printing.
//!
//! A URL that can never connect (a port above 65535, an unknown `sslmode`, a CA file that is not
//! there, an empty vhost) is refused before the recorder starts, with the reason and the fix,
//! instead of being retried as "unreachable" forever.

use std::{path::Path, str::FromStr};

use lapin::{
    tcp::OwnedTLSConfig,
    uri::{AMQPScheme, AMQPUri},
};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use url::Url;

/// Why a URL was refused, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlProblem {
    pub problem: String,
    pub fix: &'static str,
}

impl UrlProblem {
    fn new(problem: impl Into<String>, fix: &'static str) -> Self {
        Self {
            problem: problem.into(),
            fix,
        }
    }
}

const DATABASE_FIX: &str = "expected postgres://user:password@host:5432/database[?sslmode=verify-full&sslrootcert=/path/ca.crt]";
const RABBITMQ_FIX: &str = "expected amqp://user:password@host:5672/vhost (the default vhost `/` is written %2f; amqps:// for TLS, with ?cacertfile=/path/ca.crt for a private CA)";

/// Query parameters of `RABBITMQ_URL`: lapin's, plus `cacertfile` (RabbitMQ's URI parameter for
/// the CA that signed the broker's certificate). Anything else would be silently ignored.
const AMQP_PARAMETERS: [&str; 6] = [
    "heartbeat",
    "connection_timeout",
    "frame_max",
    "channel_max",
    "auth_mechanism",
    "cacertfile",
];

/// Checks `DATABASE_URL` as sqlx will read it, and the files it names.
pub fn check_database_url(raw: &str) -> Result<(), UrlProblem> {
    let url = Url::parse(raw).map_err(|e| UrlProblem::new(e.to_string(), DATABASE_FIX))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(UrlProblem::new(
            format!("the scheme is {:?}", url.scheme()),
            DATABASE_FIX,
        ));
    }
    let options = PgConnectOptions::from_str(raw)
        .map_err(|e| UrlProblem::new(e.to_string(), DATABASE_FIX))?;
    let verifies = matches!(
        options.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslrootcert" | "ssl-root-cert" | "ssl-ca" => {
                readable_certificate(&value).map_err(|problem| {
                    UrlProblem::new(
                        format!("sslrootcert: {problem}"),
                        "set sslrootcert to a readable PEM file holding the CA that signed the server's certificate",
                    )
                })?;
                // sqlx, unlike libpq, ignores the CA below verify-ca: say so instead of
                // connecting unverified.
                if !verifies {
                    return Err(UrlProblem::new(
                        "sslrootcert is set but sslmode does not verify the server's certificate",
                        "add sslmode=verify-full (or verify-ca) so that the CA in sslrootcert is used",
                    ));
                }
            }
            "sslcert" | "ssl-cert" | "sslkey" | "ssl-key" => {
                readable(&value).map_err(|problem| {
                    UrlProblem::new(
                        format!("{key}: {problem}"),
                        "set sslcert and sslkey to readable PEM files (the client certificate and its key)",
                    )
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks `RABBITMQ_URL`, its vhost and the CA file it names.
pub fn check_rabbitmq_url(raw: &str) -> Result<(), UrlProblem> {
    amqp_target(raw).map(|_| ())
}

/// The parsed `RABBITMQ_URL` and its TLS settings: what lapin needs to connect to it.
pub fn amqp_target(raw: &str) -> Result<(AMQPUri, OwnedTLSConfig), UrlProblem> {
    let url = Url::parse(raw).map_err(|e| UrlProblem::new(e.to_string(), RABBITMQ_FIX))?;
    let mut uri = AMQPUri::from_str(raw).map_err(|e| UrlProblem::new(e, RABBITMQ_FIX))?;
    // The parser keeps only host names and falls back to `localhost` for an IP address: keep
    // the address the URL names.
    if let Some(host) = url.host() {
        match host {
            url::Host::Domain(_) => {}
            url::Host::Ipv4(ip) => uri.authority.host = ip.to_string(),
            url::Host::Ipv6(ip) => uri.authority.host = ip.to_string(),
        }
    }
    let path = url.path();
    if path == "/" {
        return Err(UrlProblem::new(
            "the vhost is empty (the URL ends with `/`)",
            "write the default vhost `/` as %2f (amqp://host:5672/%2f), or leave the path out",
        ));
    }
    if path.len() > 1 && path[1..].contains('/') {
        return Err(UrlProblem::new(
            format!("the vhost {:?} has an unescaped `/`", &path[1..]),
            "percent-encode `/` inside a vhost name as %2f",
        ));
    }
    let mut tls = OwnedTLSConfig::default();
    for (key, value) in url.query_pairs() {
        if !AMQP_PARAMETERS.contains(&key.as_ref()) {
            return Err(UrlProblem::new(
                format!("unknown query parameter {key:?}"),
                "use only heartbeat, connection_timeout, frame_max, channel_max, auth_mechanism and cacertfile",
            ));
        }
        if key == "cacertfile" {
            if uri.scheme != AMQPScheme::AMQPS {
                return Err(UrlProblem::new(
                    "cacertfile is set on a plain amqp:// URL",
                    "use amqps:// to connect with TLS, or remove cacertfile",
                ));
            }
            let pem = readable_certificate(&value).map_err(|problem| {
                UrlProblem::new(
                    format!("cacertfile: {problem}"),
                    "set cacertfile to a readable PEM file holding the CA that signed the broker's certificate",
                )
            })?;
            tls.cert_chain = Some(pem);
        }
    }
    Ok((uri, tls))
}

fn readable(path: &str) -> Result<String, String> {
    if !Path::new(path).is_file() {
        return Err(format!("{path} is not a file"));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{path} cannot be read: {e}"))
}

fn readable_certificate(path: &str) -> Result<String, String> {
    let pem = readable(path)?;
    if pem.contains("-----BEGIN CERTIFICATE-----") {
        Ok(pem)
    } else {
        Err(format!("{path} holds no PEM certificate"))
    }
}

/// Hides the passwords of a URL before it is printed: the one in the user info, and any query
/// parameter whose name contains `password`. Reserved characters in a password must be
/// percent-encoded (as in any URL) for this to find where the password ends.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let query_start = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    let before_query = match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &userinfo[..colon], &before_query[at..]),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    format!("{head}{before_query}{}", redact_query(query))
}

/// `?a=1&password=x` -> `?a=1&password=***`, keeping everything else as written.
fn redact_query(query: &str) -> String {
    let Some(marker) = query.chars().next() else {
        return String::new();
    };
    let pairs: Vec<String> = query[1..]
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{marker}{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_out_of_range_is_refused() {
        let err = check_database_url("postgres://postgres@127.0.0.1:99999/x").unwrap_err();
        assert!(err.problem.contains("invalid port"), "{err:?}");
    }

    #[test]
    fn an_unknown_sslmode_is_refused() {
        let err = check_database_url("postgres://h/db?sslmode=verify-everything").unwrap_err();
        assert!(err.problem.contains("verify-everything"), "{err:?}");
    }

    #[test]
    fn a_missing_root_certificate_is_refused() {
        let err = check_database_url(
            "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
        )
        .unwrap_err();
        assert!(
            err.problem.starts_with("sslrootcert: /nonexistent/ca.crt"),
            "{err:?}"
        );
    }

    #[test]
    fn a_root_certificate_that_would_be_ignored_is_refused() {
        let dir = std::env::temp_dir().join(format!("br-url-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.crt");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let url = |mode: &str| {
            format!(
                "postgres://h/db?sslmode={mode}&sslrootcert={}",
                ca.display()
            )
        };
        let err = check_database_url(&url("require")).unwrap_err();
        assert!(err.fix.contains("verify-full"), "{err:?}");
        assert_eq!(check_database_url(&url("verify-full")), Ok(()));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn plain_urls_pass() {
        assert_eq!(
            check_database_url("postgres://u:p@127.0.0.1:5432/db?sslmode=require"),
            Ok(())
        );
        assert_eq!(
            check_rabbitmq_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Ok(())
        );
        assert_eq!(
            check_rabbitmq_url("amqps://broker.example?heartbeat=30"),
            Ok(())
        );
    }

    #[test]
    fn vhosts_must_be_one_non_empty_segment() {
        let empty = check_rabbitmq_url("amqp://h:5672/").unwrap_err();
        assert!(empty.problem.contains("vhost is empty"), "{empty:?}");
        let nested = check_rabbitmq_url("amqp://h:5672/a/b").unwrap_err();
        assert!(nested.problem.contains("unescaped"), "{nested:?}");
        let (uri, _) = amqp_target("amqp://h/ledger%2fprod").unwrap();
        assert_eq!(uri.vhost, "ledger/prod");
        let (uri, _) = amqp_target("amqp://h").unwrap();
        assert_eq!(uri.vhost, "/");
    }

    #[test]
    fn broker_urls_with_bad_parts_are_refused() {
        for (url, problem) in [
            ("amqp://h:70000/%2f", "invalid port"),
            ("amqp://h/%2f?heartbeat=soon", "invalid digit"),
            ("amqp://h/%2f?hearbeat=30", "unknown query parameter"),
            ("amqp://h/%2f?cacertfile=/etc/hostname", "plain amqp://"),
            (
                "amqps://h/%2f?cacertfile=/nonexistent.pem",
                "cacertfile: /nonexistent.pem",
            ),
        ] {
            let err = check_rabbitmq_url(url).unwrap_err();
            assert!(err.problem.contains(problem), "{url}: {err:?}");
        }
    }

    #[test]
    fn an_ip_address_is_kept_as_the_broker_host() {
        let (uri, _) = amqp_target("amqp://u:p@10.1.2.3:5673/%2f").unwrap();
        assert_eq!(
            (uri.authority.host.as_str(), uri.authority.port),
            ("10.1.2.3", 5673)
        );
        let (uri, _) = amqp_target("amqp://[::1]/%2f").unwrap();
        assert_eq!(uri.authority.host, "::1");
        let (uri, _) = amqp_target("amqps://rabbit.ledger.svc/%2f").unwrap();
        assert_eq!(uri.authority.host, "rabbit.ledger.svc");
    }

    #[test]
    fn redact_hides_every_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/ledger"),
            "postgres://app:***@db:5432/ledger"
        );
        assert_eq!(
            redact("postgres://app@db/ledger?sslmode=require&password=s3cret"),
            "postgres://app@db/ledger?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://db/ledger?PASSWORD=a&sslpassword=b#frag"),
            "postgres://db/ledger?PASSWORD=***&sslpassword=***"
        );
        assert_eq!(
            redact("amqp://guest:p%40ss@h:5672/%2f?heartbeat=10"),
            "amqp://guest:***@h:5672/%2f?heartbeat=10"
        );
        assert_eq!(redact("postgres://db/ledger"), "postgres://db/ledger");
        assert_eq!(redact("not a url"), "not a url");
    }
}
