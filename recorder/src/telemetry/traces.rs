//! Traces: the producer's trace continues through the recorder.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, every bulk write is a span (`process <queue>`, kind
//! consumer, messaging and database attributes) **linked** to every message's producer context
//! (W3C `traceparent` from its headers: a bulk serves many traces, so it is the child of none),
//! with child spans for the statements, the commit's durability wait, the document store, the
//! events and the Redis cleanup; a rejected message gets a span of its own under its producer's
//! trace. Spans go out in batches over OTLP (gRPC or http/protobuf) from the SDK's own thread.
//! Without an endpoint nothing is built: no span, no context, no allocation per message.
//!
//! Code deep in the write path opens child spans with [`child`]: it finds the bulk's span and
//! this recorder's tracer in the current OpenTelemetry context, which the flush carries while
//! it is polled ([`FutureExt::with_context`]), and finds nothing (at the cost of a thread-local
//! read) when tracing is off.

use std::{borrow::Cow, time::Duration};

use opentelemetry::{
    Context, KeyValue,
    context::FutureExt,
    propagation::{Extractor, TextMapPropagator},
    trace::{Link, Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracer, SdkTracerProvider, Span},
};

use crate::{broker::context::MessageContext, config::TracingConfig};

/// The tracer of a recorder with tracing on.
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// This recorder's tracer, carried in the contexts it makes (so that [`child`] needs no global).
#[derive(Clone)]
struct RecorderTracer(SdkTracer);

pub use super::otlp::TracingError;

impl Traces {
    /// Builds the exporter and the batch span processor (its own thread).
    pub fn start(config: &TracingConfig) -> Result<Self, TracingError> {
        let exporter = super::otlp::exporter(config)?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(config.sampler().map_err(TracingError::new)?)
            .with_resource(resource)
            // A bulk links every message it writes.
            .with_max_links_per_span(config.max_links)
            .build();
        let tracer = provider.tracer("bulk-recorder");
        Ok(Self { provider, tracer })
    }

    /// The span of one bulk write, linked to each message's producer trace, as the context the
    /// write runs in.
    pub fn bulk<'a>(
        &self,
        queue: &str,
        messages: impl ExactSizeIterator<Item = &'a MessageContext>,
    ) -> Context {
        let count = messages.len();
        let links: Vec<Link> = messages
            .filter_map(|m| producer(m).map(Link::with_context))
            .collect();
        let span = self
            .tracer
            .span_builder(format!("process {queue}"))
            .with_kind(SpanKind::Consumer)
            .with_links(links)
            .with_attributes([
                KeyValue::new("messaging.system", "rabbitmq"),
                KeyValue::new("messaging.destination.name", queue.to_string()),
                KeyValue::new("messaging.operation.type", "process"),
                KeyValue::new("messaging.batch.message_count", count as i64),
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.system", "postgresql"),
            ])
            .start_with_context(&self.tracer, &Context::new());
        Context::new()
            .with_span(span)
            .with_value(RecorderTracer(self.tracer.clone()))
    }

    /// A span of its own for a rejected message, under its producer's trace.
    pub fn rejected(&self, message: &MessageContext, queue: &str, reason: &str, error: &str) {
        let parent = match producer(message) {
            Some(producer) => Context::new().with_remote_span_context(producer),
            None => Context::new(),
        };
        let mut span = self
            .tracer
            .span_builder(format!("reject {queue}"))
            .with_kind(SpanKind::Consumer)
            .with_attributes([
                KeyValue::new("messaging.system", "rabbitmq"),
                KeyValue::new("messaging.destination.name", queue.to_string()),
                KeyValue::new("messaging.operation.type", "settle"),
                KeyValue::new("error.type", reason.to_string()),
                KeyValue::new("bulk_recorder.request_id", message.request_id().to_string()),
            ])
            .start_with_context(&self.tracer, &parent);
        span.set_status(Status::error(error.to_string()));
        span.end();
    }

    /// Exports what is left (at most a few seconds), off the async threads: the SDK blocks.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        });
        if let Ok(Err(error)) = done.await {
            tracing::warn!(%error, "exporting the last spans");
        }
    }
}

/// Runs `work` in the context of `bulk` when there is one.
pub async fn within<F: Future>(bulk: Option<Context>, work: F) -> F::Output {
    match bulk {
        Some(cx) => work.with_context(cx).await,
        None => work.await,
    }
}

/// A child span of the current bulk's span, ended when dropped; nothing without one.
pub struct Child(Option<Span>);

/// Opens `name` under the bulk being written, if it is traced.
pub fn child(name: &'static str) -> Child {
    Context::map_current(|cx| {
        let tracer = cx.get::<RecorderTracer>()?;
        Some(
            tracer
                .0
                .span_builder(Cow::Borrowed(name))
                .with_kind(SpanKind::Internal)
                .start_with_context(&tracer.0, cx),
        )
    })
    .map_or(Child(None), |span| Child(Some(span)))
}

/// Runs `work` as a child span of the bulk being written (when it is traced), marked failed when
/// it fails.
pub async fn step<T, E: std::fmt::Display>(
    name: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let mut span = child(name);
    let result = work.await;
    if let Err(error) = &result {
        span.fail(error);
    }
    result
}

/// The bulk being written, for work done later on its behalf (the Redis cleanup): `None` when it
/// is not traced.
#[derive(Clone)]
pub struct Origin {
    tracer: SdkTracer,
    span: opentelemetry::trace::SpanContext,
}

impl Origin {
    /// A traced bulk numbered `n`, on a tracer that exports nothing.
    #[cfg(test)]
    pub fn for_tests(n: u64) -> Self {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _};
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        Self {
            tracer: provider.tracer("test"),
            span: opentelemetry::trace::SpanContext::new(
                TraceId::from(u128::from(n) + 1),
                SpanId::from(n + 1),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
        }
    }
}

/// The current bulk's span, if it is traced.
pub fn origin() -> Option<Origin> {
    Context::map_current(|cx| {
        let tracer = cx.get::<RecorderTracer>()?;
        Some(Origin {
            tracer: tracer.0.clone(),
            span: cx.span().span_context().clone(),
        })
    })
}

/// A span of its own for work done on behalf of the bulks of `origins`, linked to them; nothing
/// when none is traced.
pub fn linked(name: &'static str, origins: &[Origin]) -> Child {
    let Some(first) = origins.first() else {
        return Child(None);
    };
    let mut links: Vec<Link> = origins
        .iter()
        .map(|o| Link::with_context(o.span.clone()))
        .collect();
    links.dedup_by(|a, b| a.span_context == b.span_context);
    let span = first
        .tracer
        .span_builder(Cow::Borrowed(name))
        .with_kind(SpanKind::Internal)
        .with_links(links)
        .start_with_context(&first.tracer, &Context::new());
    Child(Some(span))
}

impl Child {
    pub fn attribute(&mut self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `error`.
    pub fn fail(&mut self, error: &impl std::fmt::Display) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(error.to_string()));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(span) = &mut self.0 {
            span.end();
        }
    }
}

/// The producer's span, from the message's `traceparent` (and `tracestate`).
fn producer(message: &MessageContext) -> Option<opentelemetry::trace::SpanContext> {
    let traceparent = message.traceparent.as_deref()?;
    let headers = Headers {
        traceparent,
        tracestate: message.tracestate.as_deref(),
    };
    let cx = TraceContextPropagator::new().extract(&headers);
    let span = cx.span().span_context().clone();
    span.is_valid().then_some(span)
}

struct Headers<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producers_span_is_read_from_traceparent_whatever_its_header_case() {
        let message = MessageContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..Default::default()
        };
        let span = producer(&message).expect("a valid context");
        assert_eq!(
            span.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(span.is_remote() && span.is_sampled());
        let broken = MessageContext {
            traceparent: Some("00-zz-b7ad6b7169203331-01".into()),
            ..Default::default()
        };
        assert!(producer(&broken).is_none());
    }

    #[test]
    fn without_a_traced_bulk_a_child_is_nothing() {
        let mut child = child("COPY");
        child.attribute("rows", 3);
        assert!(child.0.is_none());
    }
}
