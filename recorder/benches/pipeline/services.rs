//! The benchmark's databases and queues: fresh ones per run, dropped afterwards.

use bulk_recorder::store::db;
use bulk_recorder_publish as publish;
use lapin::{Connection, ConnectionProperties, options::QueueDeleteOptions};
use sqlx::{Connection as _, PgConnection};

pub fn admin_url() -> String {
    std::env::var("BENCH_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("BENCH_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    format!("{}/{name}", &admin[..admin.rfind('/').expect("a database")])
}

async fn admin(sql: &str) {
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("PostgreSQL");
    sqlx::query(sql)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A new database with the recorder's tables, or a copy of `template` (tables and rows).
pub async fn fresh_database(name: &str, template: Option<&str>) -> String {
    drop_database(name).await;
    match template {
        Some(template) => admin(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await,
        None => {
            admin(&format!("CREATE DATABASE {name}")).await;
            let pool = sqlx::PgPool::connect(&database_url(name)).await.unwrap();
            db::migrate(&pool).await.unwrap();
            pool.close().await;
        }
    }
    database_url(name)
}

pub async fn drop_database(name: &str) {
    admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

/// Disk the two tables take, with their indexes and TOAST (MiB).
pub async fn table_mib(url: &str) -> f64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let bytes: i64 = sqlx::query_scalar(
        "SELECT (pg_total_relation_size('transaction') + pg_total_relation_size('operation'))::int8",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    bytes as f64 / (1024.0 * 1024.0)
}

pub async fn amqp() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ")
}

/// A new queue holding `bodies`, published with confirms before anything is timed.
pub async fn fresh_queue(name: &str, bodies: &[(Vec<u8>, &'static str)]) {
    delete_queue(name).await;
    let connection = amqp().await;
    bulk_recorder_publish::declare_queue(&connection, name)
        .await
        .unwrap();
    publish::publish_bodies(&connection, name, bodies.iter().cloned())
        .await
        .unwrap();
    let _ = connection.close(200, "ok".into()).await;
}

pub async fn delete_queue(name: &str) {
    let connection = amqp().await;
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "ok".into()).await;
}

/// The queue that takes the runs' events: bound to `amq.topic` for every routing key, holding
/// only the newest (the broker routes each event, as a ledger's topology does, and drops the
/// older ones, so that a run's events cost it no memory). Without a binding the broker would
/// return every event the recorder publishes `mandatory`, a cost no real topology has.
pub const EVENT_SINK: &str = "bulk-recorder-bench-events";

pub async fn bind_event_sink() {
    let connection = amqp().await;
    let channel = connection.create_channel().await.unwrap();
    let _ = channel
        .queue_delete(EVENT_SINK.into(), QueueDeleteOptions::default())
        .await;
    let mut args = lapin::types::FieldTable::default();
    args.insert(
        "x-max-length".into(),
        lapin::types::AMQPValue::LongLongInt(1),
    );
    channel
        .queue_declare(
            EVENT_SINK.into(),
            lapin::options::QueueDeclareOptions::default(),
            args,
        )
        .await
        .expect("the events' queue");
    channel
        .queue_bind(
            EVENT_SINK.into(),
            "amq.topic".into(),
            "#".into(),
            lapin::options::QueueBindOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("bound to amq.topic");
    let _ = connection.close(200, "ok".into()).await;
}

/// Drops a database of the document store (the metadata run's).
pub async fn drop_mongodb_database(name: &str) {
    let url =
        std::env::var("BENCH_MONGODB_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let client = mongodb::Client::with_uri_str(&url)
        .await
        .expect("the document store");
    client
        .database(name)
        .drop()
        .await
        .expect("the metadata database dropped");
}
