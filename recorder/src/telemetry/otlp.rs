//! The OTLP span exporter: gRPC (tonic) or http/protobuf (hyper, TLS on rustls with ring).
//!
//! The SDK's batch span processor exports from a thread of its own, outside the tokio runtime,
//! where an async HTTP client cannot run: the HTTP client here hands each request to the
//! runtime the recorder started on.

use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response, hyper::HyperClient};
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig};

use crate::config::{OtlpProtocol, TracingConfig};

#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter: {0}")]
pub struct TracingError(String);

impl TracingError {
    pub fn new(why: String) -> Self {
        Self(why)
    }
}

/// The longest one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn exporter(config: &TracingConfig) -> Result<SpanExporter, TracingError> {
    let built = match config.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&config.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_http_client(OnRuntime::new()?)
            .with_endpoint(&config.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build(),
    };
    built.map_err(|e| TracingError::new(e.to_string()))
}

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

/// An HTTP client whose requests run on the recorder's tokio runtime.
#[derive(Debug)]
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    client: std::sync::Arc<HyperClient<Https>>,
}

impl OnRuntime {
    fn new() -> Result<Self, TracingError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| TracingError::new(format!("the system's CA certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            runtime: tokio::runtime::Handle::current(),
            client: std::sync::Arc::new(HyperClient::new(https, EXPORT_TIMEOUT, None)),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
