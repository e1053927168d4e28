//! The connection to the ledger's Redis, made on first use and made again after a failure: one
//! server (the `redis` crate's auto-reconnecting connection manager), a cluster, or the master a
//! set of sentinels names.

use std::time::Duration;

use redis::{
    RedisResult, Script,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tokio::sync::Mutex;

use super::backup::{BACKUP_HASH, COMPARE_AND_DELETE, Cleaned, Entry};
use crate::config::redis_url::RedisTarget;

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

pub struct RedisClient {
    target: RedisTarget,
    /// `REDIS_URL` without its password, for logs.
    shown: String,
    connection: Mutex<Option<Connection>>,
    script: Script,
}

impl RedisClient {
    pub fn new(target: RedisTarget, shown: String) -> Self {
        Self {
            target,
            shown,
            connection: Mutex::new(None),
            script: Script::new(COMPARE_AND_DELETE),
        }
    }

    /// One round-trip (per node, in a cluster): the conditional removal of every entry's backup
    /// and the deletion of its write-behind key.
    pub async fn clean(&self, entries: &[Entry]) -> RedisResult<Cleaned> {
        let mut connection = self.connection().await?;
        let result = match &mut connection {
            Connection::Server(c) => run(c, &self.script, entries).await,
            Connection::Cluster(c) => run(c, &self.script, entries).await,
            Connection::Sentinel(c) => run(c, &self.script, entries).await,
        };
        if let Err(error) = &result {
            tracing::debug!(%error, redis = self.shown, "Redis cleanup failed");
            if !matches!(connection, Connection::Server(_)) {
                // The manager reconnects by itself; the others are made again next time.
                *self.connection.lock().await = None;
            }
        }
        result
    }

    async fn connection(&self) -> RedisResult<Connection> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Ok(connection.clone());
        }
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connecting to Redis",
                ))
            })??;
        tracing::info!(redis = self.shown, "connected to the ledger's Redis");
        *held = Some(connection.clone());
        Ok(connection)
    }

    async fn connect(&self) -> RedisResult<Connection> {
        match &self.target {
            RedisTarget::Server(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1);
                let client = redis::Client::open(url.as_str())?;
                Ok(Connection::Server(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .build()?;
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
            RedisTarget::Sentinel {
                sentinels,
                service,
                master,
            } => {
                let mut info = redis::RedisConnectionInfo::default().set_db(master.db);
                if let Some(username) = &master.username {
                    info = info.set_username(username);
                }
                if let Some(password) = &master.password {
                    info = info.set_password(password);
                }
                let mut node =
                    SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
                if master.tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let mut client = SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    service.as_str(),
                    Some(node),
                    SentinelServerType::Master,
                )?;
                Ok(Connection::Sentinel(client.get_async_connection().await?))
            }
        }
    }
}

/// The script and the deletions in one pipeline; the script is loaded once when the server does
/// not know it yet (a new or restarted server).
async fn run<C: ConnectionLike + Send>(
    connection: &mut C,
    script: &Script,
    entries: &[Entry],
) -> RedisResult<Cleaned> {
    let mut invocation = script.key(BACKUP_HASH);
    for entry in entries {
        invocation.arg(&entry.field).arg(&entry.expected);
    }
    let mut pipeline = redis::pipe();
    pipeline.invoke_script(&invocation);
    for entry in entries {
        pipeline.del(&entry.write_behind).ignore();
    }
    let answer: RedisResult<((u64, u64, u64),)> = pipeline.query_async(connection).await;
    let ((removed, kept, absent),) = match answer {
        Err(error)
            if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
        {
            invocation.load_async(connection).await?;
            pipeline.query_async(connection).await?
        }
        other => other?,
    };
    Ok(Cleaned {
        removed,
        kept,
        absent,
    })
}
