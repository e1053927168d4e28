//! `REDIS_URL`: one server, a cluster, or a server found through sentinels, as the `redis` crate
//! connects to them.
//!
//! - `redis://[user[:password]@]host[:port][/db]`, `rediss://...` (TLS): one server;
//! - `redis+cluster://[user[:password]@]host:port,host:port,...` (`rediss+cluster://`): a
//!   cluster, any of its nodes to start from (the ledger's backup hash is one key, on one slot);
//! - `redis+sentinel://[user[:password]@]host:port,host:port,.../<service>[/db]`
//!   (`rediss+sentinel://`): the master of `<service>`, asked of the sentinels.

use super::connection_url::UrlProblem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// A `redis://` or `rediss://` URL the crate reads as it is.
    Server(String),
    /// One `redis://` URL per starting node.
    Cluster(Vec<String>),
    Sentinel {
        /// One `redis://` URL per sentinel.
        sentinels: Vec<String>,
        service: String,
        /// The master's URL, without host (credentials, TLS, database).
        master: MasterAuth,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterAuth {
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

const FIX: &str = "expected redis://[user:password@]host:6379[/db], rediss:// for TLS, \
    redis+cluster://host:6379,host:6380 or redis+sentinel://host:26379,host:26380/<service>";

impl RedisTarget {
    pub fn parse(raw: &str) -> Result<Self, UrlProblem> {
        let problem = |p: String| UrlProblem {
            problem: p,
            fix: FIX,
        };
        let (scheme, rest) = raw
            .split_once("://")
            .ok_or_else(|| problem("no scheme".into()))?;
        let (base, mode) = scheme.split_once('+').unwrap_or((scheme, ""));
        let tls = match base {
            "redis" => false,
            "rediss" => true,
            other => return Err(problem(format!("the scheme is {other:?}"))),
        };
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if hosts.is_empty() {
            return Err(problem("no host".into()));
        }
        let node = |host: &str| {
            let credentials = userinfo.map_or(String::new(), |u| format!("{u}@"));
            format!("{base}://{credentials}{host}")
        };
        match mode {
            "" => {
                redis::Client::open(raw).map_err(|e| problem(e.to_string()))?;
                Ok(RedisTarget::Server(raw.to_string()))
            }
            "cluster" => Ok(RedisTarget::Cluster(hosts.into_iter().map(node).collect())),
            "sentinel" => {
                let mut parts = path.split('/').filter(|p| !p.is_empty());
                let service = parts
                    .next()
                    .ok_or_else(|| problem("no sentinel service name after the hosts".into()))?;
                let db = match parts.next() {
                    Some(db) => db
                        .parse()
                        .map_err(|_| problem(format!("the database {db:?} is not a number")))?,
                    None => 0,
                };
                let (username, password) = match userinfo.map(|u| u.split_once(':')) {
                    Some(Some((user, password))) => (decoded(user)?, decoded(password)?),
                    Some(None) => (decoded(userinfo.unwrap_or_default())?, None),
                    None => (None, None),
                };
                Ok(RedisTarget::Sentinel {
                    sentinels: hosts.iter().map(|h| format!("redis://{h}")).collect(),
                    service: service.to_string(),
                    master: MasterAuth {
                        tls,
                        username,
                        password,
                        db,
                    },
                })
            }
            other => Err(problem(format!("unknown mode {other:?} in the scheme"))),
        }
    }
}

/// A user name or password as it is meant: percent-decoded, as the redis crate decodes those of
/// `redis://` URLs (a `@` or `:` in a password is written `%40`, `%3A`); empty is none.
fn decoded(text: &str) -> Result<Option<String>, UrlProblem> {
    let text = percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map_err(|_| UrlProblem {
            problem: "the user name or password is not UTF-8 once percent-decoded".into(),
            fix: FIX,
        })?;
    Ok((!text.is_empty()).then(|| text.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_a_cluster_and_sentinels() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTarget::Server("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            RedisTarget::parse("rediss+cluster://u:p@a:7000,b:7001").unwrap(),
            RedisTarget::Cluster(vec![
                "rediss://u:p@a:7000".into(),
                "rediss://u:p@b:7001".into()
            ])
        );
        assert_eq!(
            RedisTarget::parse("redis+sentinel://:secret@s1:26379,s2:26379/ledger/3").unwrap(),
            RedisTarget::Sentinel {
                sentinels: vec!["redis://s1:26379".into(), "redis://s2:26379".into()],
                service: "ledger".into(),
                master: MasterAuth {
                    tls: false,
                    username: None,
                    password: Some("secret".into()),
                    db: 3
                },
            }
        );
    }

    /// `redis://` URLs are percent-decoded by the redis crate; the sentinel master's credentials
    /// must be too, or `p%40ss` is sent as it is and authentication fails.
    #[test]
    fn the_sentinel_masters_credentials_are_percent_decoded_as_redis_urls_are() {
        let RedisTarget::Sentinel { master, .. } =
            RedisTarget::parse("redis+sentinel://ledger%2Dapp:p%40ss%3Aw0rd@s1:26379/ledger")
                .unwrap()
        else {
            panic!("a sentinel target");
        };
        assert_eq!(master.username.as_deref(), Some("ledger-app"));
        assert_eq!(master.password.as_deref(), Some("p@ss:w0rd"));
        let plain = redis::Client::open("redis://ledger%2Dapp:p%40ss%3Aw0rd@h:6379").unwrap();
        let info = plain.get_connection_info().redis_settings();
        assert_eq!(
            (info.username(), info.password()),
            (Some("ledger-app"), Some("p@ss:w0rd")),
            "what redis:// does"
        );
        assert!(RedisTarget::parse("redis+sentinel://:%FF@s1:26379/ledger").is_err());
    }

    #[test]
    fn urls_that_can_never_connect_are_refused() {
        for bad in [
            "http://host",
            "redis+sentinel://s1:26379",
            "redis+mesh://h:1",
            "redis://",
        ] {
            assert!(RedisTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
