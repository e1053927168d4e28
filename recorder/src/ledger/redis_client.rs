//! The connection to the ledger's Redis, made on first use and made again after any failure or
//! timeout: one server (the `redis` crate's connection manager), a cluster, or the master a set
//! of sentinels names. The connection manager reconnects only when the socket reports an error;
//! a half-open one (a peer gone silent, a NAT that dropped the flow) answers nothing, forever, so
//! a call without an answer drops it too ([`RedisClient::reset`]). It runs a script on one slot and deletes keys spread over any
//! number of slots (a cluster splits a multi-key `DEL` by slot and sends the parts to their
//! nodes at once; a pipeline across slots would be refused with CROSSSLOT).

use std::time::Duration;

use redis::{
    Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tokio::sync::Mutex;

use crate::config::redis_url::RedisTarget;

/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

pub struct RedisClient {
    target: RedisTarget,
    /// The longest one call waits for its answer (the crate's own default is 500 ms).
    response_timeout: Duration,
    /// `REDIS_URL` without its password, for logs.
    shown: String,
    connection: Mutex<Option<Connection>>,
}

impl RedisClient {
    pub fn new(target: RedisTarget, shown: String, response_timeout: Duration) -> Self {
        Self {
            target,
            response_timeout,
            shown,
            connection: Mutex::new(None),
        }
    }

    /// Runs `script` on `keys` (one slot) with `args`, loading it where the server does not
    /// know it yet, and deletes `delete` (any slots) at the same time.
    pub async fn script_and_delete<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        delete: &[&str],
    ) -> RedisResult<T> {
        let connection = self.connection().await?;
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let (mut for_script, mut for_delete) = (connection.clone(), connection);
        let deleted = async {
            if delete.is_empty() {
                return Ok(());
            }
            redis::cmd("DEL")
                .arg(delete)
                .query_async::<()>(&mut for_delete)
                .await
        };
        let (answer, deleted) =
            tokio::join!(invocation.invoke_async::<T>(&mut for_script), deleted);
        let result = deleted.and(answer);
        if let Err(error) = &result {
            tracing::debug!(%error, redis = self.shown, "Redis call failed");
            self.reset().await;
        }
        result
    }

    /// Drops the connection: the next call makes a new one.
    pub async fn reset(&self) {
        *self.connection.lock().await = None;
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
                    .set_response_timeout(Some(self.response_timeout))
                    .set_number_of_retries(1);
                let client = redis::Client::open(url.as_str())?;
                Ok(Connection::Server(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(self.response_timeout)
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
