//! `--memory`: the recorder's peak resident memory over a long drain (1,000,000 transactions by
//! default) at the defaults and the best setting. The messages are generated and published
//! while the recorder drains them, a slice at a time and never more than `BACKLOG` ahead, so
//! that neither this process nor the broker holds the whole run.

use std::{fmt::Write as _, time::Duration};

use bulk_recorder::message::Format;
use bulk_recorder_publish::{content_type, encode, sample_transaction};
use lapin::options::QueueDeclareOptions;

use crate::{
    BEST, DEFAULTS, OPS, Setting,
    run::{Row, Run},
    services::{self, drop_database, fresh_database},
};

const SLICE: usize = 10_000;
const BACKLOG: u32 = 100_000;

async fn depth(channel: &lapin::Channel, queue: &str) -> u32 {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .map_or(0, |q| q.message_count())
}

/// Publishes `count` new JSON transactions to `queue`, pausing while the backlog is full.
async fn feed(queue: &'static str, count: usize) {
    let connection = services::amqp().await;
    let channel = connection.create_channel().await.unwrap();
    let mut sent = 0;
    while sent < count {
        while depth(&channel, queue).await > BACKLOG {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let n = SLICE.min(count - sent);
        let bodies = (0..n).map(|_| {
            let body = encode(&sample_transaction(OPS), Format::Json);
            (body, content_type(Format::Json))
        });
        bulk_recorder_publish::publish_bodies(&connection, queue, bodies)
            .await
            .unwrap();
        sent += n;
    }
    let _ = connection.close(200, "ok".into()).await;
}

async fn drain(setting: Setting, count: usize) -> Row {
    let name = "bench_memory";
    let url = fresh_database(name, None).await;
    services::fresh_queue(name, &[]).await;
    eprintln!(
        "draining {count} messages published meanwhile: {}",
        setting.describe()
    );
    let feeder = tokio::spawn(feed(name, count));
    let row = Run {
        mode: "memory",
        settings: setting.describe(),
        queue: name,
        url: &url,
        env: setting.env(),
        processes: 1,
        messages: count,
        rows_before: 0,
        operations: OPS,
    }
    .measure()
    .await;
    feeder.await.unwrap();
    drop_database(name).await;
    services::delete_queue(name).await;
    row
}

pub async fn peaks(count: usize) {
    let mut table = String::from(
        "| settings | transactions | txn/s | peak RSS MiB | recorder CPU us/msg |\n|---|---:|---:|---:|---:|\n",
    );
    for setting in [DEFAULTS, BEST] {
        let row = drain(setting, count).await;
        writeln!(
            table,
            "| {} | {} | {:.0} | {} | {} |",
            row.settings,
            row.transactions,
            row.rate(),
            crate::opt(row.peak_rss_mib, 1),
            crate::opt(row.cpu_us_per_message(), 1),
        )
        .unwrap();
    }
    println!("{table}");
}
