//! An OTLP collector of a test's own: rotel (`TEST_ROTEL_AGENT`, installed by
//! `scripts/test.sh`), receiving on free ports and printing every span it receives; the spans
//! are read back from what it printed.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    free_port,
    pg_cluster::{TempDir, wait_for_port},
    skip,
};

/// One span as the collector printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    /// Attribute name to its printed value (`Str(x)`, `Int(3)`...).
    pub attributes: BTreeMap<String, String>,
    /// (trace id, span id) of each link.
    pub links: Vec<(String, String)>,
    /// The resource's `service.name`.
    pub service: String,
}

pub struct Collector {
    pub http_port: u16,
    pub grpc_port: u16,
    output: PathBuf,
    _dir: TempDir,
    child: Child,
}

impl Collector {
    /// `None` (with a message) without `TEST_ROTEL_AGENT`.
    pub fn start() -> Option<Self> {
        let Some(agent) = std::env::var_os("TEST_ROTEL_AGENT").map(PathBuf::from) else {
            skip("TEST_ROTEL_AGENT is not set: ./scripts/test.sh installs rotel and sets it");
            return None;
        };
        let dir = TempDir::new("br-rotel");
        let output = dir.0.join("spans.txt");
        let (http_port, grpc_port) = (free_port(), free_port());
        let mut command = Command::new(agent);
        if let Some(libdir) = std::env::var_os("TEST_ROTEL_LIBDIR") {
            command.env("LD_LIBRARY_PATH", libdir);
        }
        let child = command
            .env("NO_COLOR", "1")
            .args(["start", "--exporter", "blackhole", "--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .stdout(std::fs::File::create(&output).expect("the collector's output"))
            .stderr(Stdio::null())
            .spawn()
            .expect("rotel-agent starts");
        for port in [http_port, grpc_port] {
            assert!(
                wait_for_port(port, Duration::from_secs(20)),
                "the test's collector answers"
            );
        }
        Some(Self {
            http_port,
            grpc_port,
            output,
            _dir: dir,
            child,
        })
    }

    /// Every span printed so far.
    pub fn spans(&self) -> Vec<Span> {
        parse(&std::fs::read_to_string(&self.output).unwrap_or_default())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What rotel's detailed debug log says of each span.
fn parse(text: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut service = String::new();
    let mut section = "";
    for line in text.lines() {
        let trimmed = line.trim();
        let field = |prefix: &str| {
            trimmed
                .strip_prefix(prefix)
                .map(|rest| rest.trim_start_matches([' ', ':']).trim().to_string())
        };
        if trimmed.starts_with("Resource attributes:") {
            section = "resource";
        } else if trimmed.starts_with("Span #") {
            spans.push(Span {
                service: service.clone(),
                ..Default::default()
            });
            section = "span";
        } else if trimmed == "Attributes:" {
            section = "attributes";
        } else if trimmed == "Links:" {
            section = "links";
        } else if trimmed == "Events:" {
            section = "events";
        } else if let Some(rest) = trimmed.strip_prefix("-> ") {
            let (key, value) = rest.split_once(": ").unwrap_or((rest, ""));
            match section {
                "resource" if key == "service.name" => {
                    service = value
                        .trim_start_matches("Str(")
                        .trim_end_matches(')')
                        .into()
                }
                "attributes" => {
                    if let Some(span) = spans.last_mut() {
                        span.attributes.insert(key.into(), value.into());
                    }
                }
                "links" => {
                    if let Some(span) = spans.last_mut() {
                        match key {
                            "Trace ID" => span.links.push((value.into(), String::new())),
                            "ID" => {
                                if let Some(link) = span.links.last_mut() {
                                    link.1 = value.into();
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        } else if let Some(span) = spans.last_mut()
            && section == "span"
        {
            if let Some(v) = field("Trace ID") {
                span.trace_id = v;
            } else if let Some(v) = field("Parent ID") {
                span.parent_id = v;
            } else if let Some(v) = field("ID") {
                span.id = v;
            } else if let Some(v) = field("Name") {
                span.name = v;
            } else if let Some(v) = field("Kind") {
                span.kind = v;
            } else if let Some(v) = field("Status code") {
                span.status = v;
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_with_attributes_and_links_as_rotel_prints_it() {
        let printed = "ResourceSpans #0\nResource attributes:\n     -> service.name: Str(bulk-recorder)\nScopeSpans #0\nSpan #0\n    Trace ID       : ccac4cb8f6f99a5922b73681d28e8e20\n    Parent ID      : \n    ID             : ff5148a8f1959fff\n    Name           : process orders\n    Kind           : SPAN_KIND_CONSUMER\nStart time: 1\nEnd time: 2\n    Status code    : STATUS_CODE_UNSET\nAttributes:\n     -> messaging.batch.message_count: Int(3)\nLinks:\nSpanLink #0\n     -> Trace ID: 0af7651916cd43dd8448eb211c80319c\n     -> ID: b7ad6b7169203331\n     -> TraceState: \n";
        let spans = parse(printed);
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "process orders");
        assert_eq!(span.parent_id, "");
        assert_eq!(span.service, "bulk-recorder");
        assert_eq!(span.attributes["messaging.batch.message_count"], "Int(3)");
        assert_eq!(
            span.links,
            vec![(
                "0af7651916cd43dd8448eb211c80319c".to_string(),
                "b7ad6b7169203331".to_string()
            )]
        );
    }
}
