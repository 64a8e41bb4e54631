//! An OTLP/HTTP receiver for the trace tests: it decodes what custodian's
//! exporter really sends (`ExportTraceServiceRequest`, protobuf, with
//! `opentelemetry-proto`'s messages) and keeps every span.

use std::collections::HashMap;
use std::sync::Mutex;

use actix_web::{web, App, HttpResponse};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

use super::http_thread::HttpThread;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    pub name: String,
    /// `SPAN_KIND_CONSUMER`, `SPAN_KIND_CLIENT`, …
    pub kind: String,
    pub attributes: HashMap<String, String>,
    pub service: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&any_value::Value>) -> String {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

async fn receive(body: web::Bytes, spans: web::Data<Mutex<Vec<Span>>>) -> HttpResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut got = Vec::new();
    for rs in &request.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                got.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind().as_str_name().to_owned(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    if let Ok(mut spans) = spans.lock() {
        spans.extend(got);
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

/// A running receiver on its own thread; stops when dropped.
pub struct Receiver {
    server: HttpThread,
    spans: web::Data<Mutex<Vec<Span>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let spans = web::Data::new(Mutex::new(Vec::new()));
        let shared = spans.clone();
        let server = HttpThread::start(1, move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .route("/v1/traces", web::post().to(receive))
        });
        Receiver { server, spans }
    }

    /// Where custodian sends its traces (`telemetry.otlp_endpoint`).
    pub fn url(&self) -> String {
        format!("http://{}/v1/traces", self.server.addr)
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The spans of trace `trace_id`.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}
