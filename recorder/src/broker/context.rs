//! Where a message comes from, as its headers say: the producer's request id (`X-Request-Id`,
//! which every log line about the message carries) and its W3C trace context (`traceparent`,
//! `tracestate`, `baggage`; the ledger writes them as Go's `http.Header` canonicalises them,
//! `Traceparent`, so names are matched whatever their case).

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable},
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub baggage: Option<String>,
}

impl MessageContext {
    /// Reads the headers of a delivery (text values only, as the ledger's consumer does); the
    /// trace context only when `trace` (traces or events are on: nothing is kept otherwise).
    pub fn of(properties: &BasicProperties, trace: bool) -> Self {
        let mut context = Self::default();
        let Some(headers) = properties.headers() else {
            return context;
        };
        for (name, value) in headers.inner() {
            let name = name.as_str();
            let slot = if name.eq_ignore_ascii_case("x-request-id") {
                &mut context.request_id
            } else if !trace {
                continue;
            } else if name.eq_ignore_ascii_case("traceparent") {
                &mut context.traceparent
            } else if name.eq_ignore_ascii_case("tracestate") {
                &mut context.tracestate
            } else if name.eq_ignore_ascii_case("baggage") {
                &mut context.baggage
            } else {
                continue;
            };
            *slot = text(value).filter(|v| !v.is_empty());
        }
        context
    }

    /// The request id for logs: empty when the producer sent none.
    pub fn request_id(&self) -> &str {
        self.request_id.as_deref().unwrap_or_default()
    }

    /// The headers of the events this message leads to: its request id (a new UUIDv7 when it
    /// had none, as the ledger does) and its trace context.
    pub fn event_headers(&self) -> FieldTable {
        let request_id = self
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut headers = FieldTable::default();
        headers.insert(
            "X-Request-Id".into(),
            AMQPValue::LongString(request_id.into()),
        );
        for (name, value) in [
            ("Traceparent", &self.traceparent),
            ("Tracestate", &self.tracestate),
            ("Baggage", &self.baggage),
        ] {
            if let Some(value) = value {
                headers.insert(name.into(), AMQPValue::LongString(value.as_str().into()));
            }
        }
        headers
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        AMQPValue::ByteArray(b) => String::from_utf8(b.as_slice().to_vec()).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledgers_canonical_names_and_any_case_are_read() {
        let mut headers = FieldTable::default();
        headers.insert("X-Request-Id".into(), AMQPValue::LongString("req-1".into()));
        headers.insert(
            "Traceparent".into(),
            AMQPValue::LongString("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        );
        headers.insert("tracestate".into(), AMQPValue::ShortString("k=v".into()));
        headers.insert("x-retry-count".into(), AMQPValue::LongLongInt(2));
        let properties = BasicProperties::default().with_headers(headers);
        assert_eq!(
            MessageContext::of(&properties, false),
            MessageContext {
                request_id: Some("req-1".into()),
                ..Default::default()
            },
            "no trace context kept when neither traces nor events are on"
        );
        let context = MessageContext::of(&properties, true);
        assert_eq!(context.request_id(), "req-1");
        assert!(
            context
                .traceparent
                .as_deref()
                .unwrap()
                .starts_with("00-0af76519")
        );
        assert_eq!(context.tracestate.as_deref(), Some("k=v"));
        let out = context.event_headers();
        assert!(out.inner().contains_key("Traceparent") && out.inner().contains_key("Tracestate"));
        assert!(!out.inner().contains_key("Baggage"));
    }
}
