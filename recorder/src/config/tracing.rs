//! How traces are exported: the standard OpenTelemetry variables (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER*`, `OTEL_SDK_DISABLED`), read once at start-up.

use opentelemetry_sdk::trace::Sampler;

use super::{ConfigError, Env};

/// Where and how spans are exported (the standard `OTEL_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingConfig {
    /// The traces endpoint, as the exporter calls it.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    pub service_name: String,
    pub sampler: String,
    pub sampler_arg: Option<String>,
    /// Links a bulk's span may carry: one per message.
    pub max_links: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

impl TracingConfig {
    /// The sampler `OTEL_TRACES_SAMPLER` names (checked when the configuration was read).
    pub fn sampler(&self) -> Result<Sampler, String> {
        sampler(&self.sampler, self.sampler_arg.as_deref())
    }
}

/// Traces, from the standard OpenTelemetry variables; `None` without an endpoint, or with
/// `OTEL_SDK_DISABLED=true`.
pub(super) fn from_env(env: &Env, bulk_size: usize) -> Result<Option<TracingConfig>, ConfigError> {
    let protocol = match env.choice("OTEL_EXPORTER_OTLP_PROTOCOL")?.as_str() {
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        _ => OtlpProtocol::Grpc,
    };
    let sampler_name = env.choice("OTEL_TRACES_SAMPLER")?;
    let sampler_arg = env.get("OTEL_TRACES_SAMPLER_ARG").map(str::to_string);
    sampler(&sampler_name, sampler_arg.as_deref()).map_err(|problem| ConfigError::Invalid {
        var: "OTEL_TRACES_SAMPLER_ARG",
        value: sampler_arg.clone().unwrap_or_default(),
        expected: problem,
    })?;
    if env.bool("OTEL_SDK_DISABLED")? {
        return Ok(None);
    }
    let endpoint = match (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => traces.to_string(),
        (None, Some(base)) if protocol == OtlpProtocol::HttpProtobuf => {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
        (None, Some(base)) => base.to_string(),
        (None, None) => return Ok(None),
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            var: "OTEL_EXPORTER_OTLP_ENDPOINT",
            value: endpoint,
            expected: "an http:// or https:// URL, e.g. http://otel-collector:4317".into(),
        });
    }
    Ok(Some(TracingConfig {
        endpoint,
        protocol,
        service_name: env.text("OTEL_SERVICE_NAME", "bulk-recorder"),
        sampler: sampler_name,
        sampler_arg,
        max_links: bulk_size.max(128).min(u32::MAX as usize) as u32,
    }))
}

/// `OTEL_TRACES_SAMPLER` (and `_ARG`) as the specification names them.
pub fn sampler(name: &str, arg: Option<&str>) -> Result<Sampler, String> {
    let ratio = || -> Result<f64, String> {
        match arg {
            None => Ok(1.0),
            Some(arg) => arg
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={arg:?} is not a ratio in 0..1")),
        }
    };
    Ok(match name.trim() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        "parentbased_traceidratio" => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio()?)))
        }
        other => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?} is not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio"
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samplers_the_specification_names() {
        assert!(sampler("parentbased_traceidratio", Some("0.25")).is_ok());
        assert!(sampler("traceidratio", Some("2")).is_err());
        assert!(sampler("jaeger_remote", None).is_err());
    }
}
