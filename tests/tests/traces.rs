//! Traces: the producer's trace continues through the recorder. Messages published with W3C
//! trace context (`Traceparent`, as the ledger's Go producer writes it, or `traceparent`) are
//! linked from the span of the bulk that wrote them, in a real OTLP collector (rotel) over gRPC
//! and over http/protobuf; the statements and the commit are child spans; a rejected message
//! gets a span under its producer's trace.

use std::{collections::BTreeSet, time::Duration};

use bulk_recorder::message::Format;
use bulk_recorder_e2e::{
    otel::{Collector, Span},
    *,
};
use bulk_recorder_publish::{encode, sample_transaction};
use lapin::{
    BasicProperties,
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
};

const DRAIN: Duration = Duration::from_secs(60);

/// A producer's span: (trace id, span id), random.
fn producer() -> (String, String) {
    (
        uuid::Uuid::new_v4().simple().to_string(),
        uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
    )
}

/// Publishes `bodies`, each with its producer's trace context under `header`.
async fn publish(queue: &TestQueue, bodies: Vec<(Vec<u8>, (String, String), &str)>) {
    let connection = connect().await;
    bulk_recorder_publish::declare_queue(&connection, &queue.name)
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for (body, (trace, span), header) in bodies {
        let mut headers = FieldTable::default();
        let traceparent = format!("00-{trace}-{span}-01");
        headers.insert(header.into(), AMQPValue::LongString(traceparent.into()));
        headers.insert(
            "X-Request-Id".into(),
            AMQPValue::LongString(format!("req-{trace}").into()),
        );
        channel
            .basic_publish(
                "".into(),
                queue.name.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let _ = connection.close(200, "ok".into()).await;
}

async fn linked_from_the_bulks_span(protocol: &str) {
    let Some(collector) = Collector::start() else {
        return;
    };
    let (db, queue) = (TestDb::create().await, TestQueue::new());
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", collector.grpc_port),
        _ => format!("http://127.0.0.1:{}", collector.http_port),
    };
    let producers: Vec<_> = (0..8).map(|_| producer()).collect();
    let rejected = producer();
    let mut bodies: Vec<_> = producers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let header = if i % 2 == 0 {
                "Traceparent"
            } else {
                "traceparent"
            };
            (
                encode(&sample_transaction(2), Format::Json),
                p.clone(),
                header,
            )
        })
        .collect();
    bodies.push((b"{\"id\": ".to_vec(), rejected.clone(), "Traceparent"));
    publish(&queue, bodies).await;
    let recorder = RunningRecorder::start(config(
        &db,
        &queue,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ],
    ));
    wait_until(DRAIN, "every message settled", || async {
        recorder.settled_messages() == 9 && broker_counts(&queue.name) == (0, 0)
    })
    .await;
    recorder.stop().await; // exports what is left

    let bulk_name = format!("process {}", queue.name);
    let mut spans: Vec<Span> = Vec::new();
    wait_until(DRAIN, "the spans in the collector", || {
        spans = collector.spans();
        let linked: BTreeSet<_> = spans
            .iter()
            .filter(|s| s.name == bulk_name)
            .flat_map(|s| s.links.iter().map(|l| l.0.clone()))
            .collect();
        let every = producers.iter().all(|(trace, _)| linked.contains(trace));
        let reject = spans.iter().any(|s| s.trace_id == rejected.0);
        async move { every && reject }
    })
    .await;
    let bulks: Vec<&Span> = spans.iter().filter(|s| s.name == bulk_name).collect();
    let links: Vec<(String, String)> = bulks.iter().flat_map(|s| s.links.clone()).collect();
    for (trace, span) in &producers {
        assert_eq!(
            links
                .iter()
                .filter(|l| l == &&(trace.clone(), span.clone()))
                .count(),
            1,
            "each message's producer span linked once"
        );
    }
    for bulk in &bulks {
        assert_eq!(bulk.kind, "SPAN_KIND_CONSUMER");
        assert_eq!(bulk.parent_id, "", "a bulk is the child of no message");
        assert_eq!(bulk.service, "bulk-recorder");
        assert_eq!(bulk.attributes["messaging.system"], "Str(rabbitmq)");
        assert_eq!(
            bulk.attributes["messaging.destination.name"],
            format!("Str({})", queue.name)
        );
        assert_eq!(
            bulk.attributes["messaging.batch.message_count"],
            format!("Int({})", bulk.links.len())
        );
        assert_eq!(bulk.attributes["db.system.name"], "Str(postgresql)");
        let children: Vec<&str> = spans
            .iter()
            .filter(|s| s.parent_id == bulk.id)
            .map(|s| s.name.as_str())
            .collect();
        assert!(
            children
                .iter()
                .any(|c| c.starts_with("INSERT") || c.starts_with("COPY")),
            "{children:?}"
        );
        assert!(children.contains(&"COMMIT"), "{children:?}");
        assert!(
            children.contains(&"wait until durable (synchronous standbys)"),
            "{children:?}"
        );
    }
    let reject = spans
        .iter()
        .find(|s| s.trace_id == rejected.0)
        .expect("the rejected message's span");
    assert_eq!(reject.parent_id, rejected.1, "under its producer's span");
    assert_eq!(reject.status, "STATUS_CODE_ERROR");
    assert_eq!(reject.attributes["error.type"], "Str(malformed)");
    assert_eq!(
        reject.attributes["bulk_recorder.request_id"],
        format!("Str(req-{})", rejected.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_grpc_each_message_is_linked_from_the_span_of_its_bulk() {
    linked_from_the_bulks_span("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_each_message_is_linked_from_the_span_of_its_bulk() {
    linked_from_the_bulks_span("http/protobuf").await;
}
