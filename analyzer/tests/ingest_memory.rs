#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]
//! The hub's byte budget against what the process really holds: resident memory (from
//! `/proc/self/statm`, an independent measure — not the hub's own arithmetic) grown by routing a
//! few hundred thousand pushed records, compared with the bytes the hub counts for them. One
//! test in its own binary, so no other test allocates meanwhile.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use vigil_analyzer::ingest::Hub;

const T0: u64 = 1_796_119_200_000_000_000;

fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

fn resource(version: &str, pod: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", "shop"),
            kv("service.version", version),
            kv("k8s.pod.name", pod),
        ],
        ..Resource::default()
    })
}

/// 512 log records of the canary, bodies 40–250 bytes.
fn logs(k: u64) -> ExportLogsServiceRequest {
    let records = (0..512u64)
        .map(|i| {
            let n = 40 + ((k * 512 + i) * 7919 % 211) as usize;
            let body: String = format!("order {k}-{i} paid in {} ms ", i % 97)
                .chars()
                .cycle()
                .take(n)
                .collect();
            LogRecord {
                time_unix_nano: T0 + (k * 512 + i) * 1_000_000,
                severity_text: "INFO".into(),
                severity_number: 9,
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                ..LogRecord::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("v2", "shop-v2-0"),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

/// 64 traces of 8 spans: a frontend client span (no analysis selects it) calling the canary's
/// server span, which has 6 children.
fn traces(k: u64) -> ExportTraceServiceRequest {
    let mut front = Vec::new();
    let mut shop = Vec::new();
    for t in 0..64u64 {
        let n = k * 64 + t;
        let mut trace = n.to_le_bytes().to_vec();
        trace.extend(n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        let id = |j: u64| (n * 8 + j + 1).to_be_bytes().to_vec();
        let start = T0 + n * 1_000_000;
        let span = |j: u64, parent: Option<u64>, name: &str| Span {
            trace_id: trace.clone(),
            span_id: id(j),
            parent_span_id: parent.map(id).unwrap_or_default(),
            name: name.into(),
            start_time_unix_nano: start + j * 1000,
            end_time_unix_nano: start + 5_000_000,
            ..Span::default()
        };
        front.push(span(0, None, "GET /checkout"));
        shop.push(span(1, Some(0), "POST /pay"));
        for j in 2..8 {
            shop.push(span(j, Some(1), "SELECT orders"));
        }
    }
    let group = |version: &str, spans| ResourceSpans {
        resource: resource(version, &format!("{version}-0")),
        scope_spans: vec![ScopeSpans {
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![group("frontend", front), group("v2", shop)],
    }
}

fn ratio(counted: usize, grown: usize) -> f64 {
    counted as f64 / grown as f64
}

#[test]
fn the_budget_counts_what_routed_and_drained_records_hold() {
    let hub = Hub::new(usize::MAX / 2);
    let m = |v: &str| {
        vec![
            ("service.name".to_owned(), "shop".to_owned()),
            ("service.version".to_owned(), v.to_owned()),
        ]
    };
    hub.register("a", m("v1"), m("v2"), 1.0);
    // Warm-up: the allocator's first arenas, the routing table.
    hub.logs(logs(0), 0).unwrap();
    hub.traces(traces(0), 0).unwrap();
    let [_, c] = hub.drain("a", 0.0).unwrap();
    hub.release("a", c.held_bytes);
    drop(c);

    // Logs: 600 requests of 512 records, about 300,000.
    let before = rss();
    let used0 = hub.used();
    for k in 1..=600 {
        hub.logs(logs(k), 0).unwrap();
    }
    let grown = rss() - before;
    let counted = hub.used() - used0;
    let r = ratio(counted, grown);
    eprintln!(
        "logs: resident memory grew {grown} B, the hub counts {counted} B ({r:.2}); {:.0} B a record",
        grown as f64 / 307_200.0
    );
    // The count also holds the two slots a record takes in the session's vector while the
    // session takes it in (`INGEST_SLOTS`), which routing alone does not touch.
    let slots = 307_200 * 2 * std::mem::size_of::<vigil_analyzer::telemetry::LogRecord>();
    let r = ratio(counted - slots, grown);
    assert!(
        (0.95..=1.3).contains(&r),
        "logs: counted {counted} B (of which {slots} B session slots) for {grown} B grown ({r:.2})"
    );
    // Drained, the same records are counted until released.
    let [_, c] = hub.drain("a", 0.0).unwrap();
    assert_eq!(c.logs.len(), 307_200);
    assert_eq!(c.held_bytes, counted);
    assert_eq!(hub.used() - used0, counted);
    hub.release("a", c.held_bytes);
    assert_eq!(hub.used(), used0);
    // Kept (as a session would until it has mined them), so that what the spans take next
    // is new memory, not the logs' freed heap.
    let logs_kept = c;

    // Spans: 600 requests of 512 (448 selected, 64 joined into callers' spans).
    let before = rss();
    let used0 = hub.used();
    for k in 1..=600 {
        hub.traces(traces(k), 0).unwrap();
    }
    let (held, join) = hub.used_parts();
    let routed = rss() - before;
    let counted = held + join - used0;
    let r = ratio(counted, routed);
    eprintln!(
        "spans routed: resident memory grew {routed} B, the hub counts {counted} B ({r:.2}; join {join} B)"
    );
    assert!(
        r >= 0.95,
        "spans: counted {counted} B for {routed} B grown ({r:.2})"
    );
    // Drained (ids now as hex text): still within what was counted.
    let [_, c] = hub.drain("a", 0.0).unwrap();
    assert_eq!(c.spans.len(), 600 * (448 + 64));
    assert_eq!(
        c.spans.iter().filter(|s| s.caller.is_some()).count(),
        600 * 64
    );
    let drained = rss() - before;
    let slots = 600 * 512 * 2 * std::mem::size_of::<vigil_analyzer::telemetry::Span>();
    let r = ratio(c.held_bytes + join - slots, drained);
    eprintln!(
        "spans drained: resident memory grew {drained} B, the hub counts {} B ({r:.2})",
        c.held_bytes + join
    );
    assert!(
        (0.95..=1.35).contains(&r),
        "drained spans: counted {} B for {drained} B grown ({r:.2})",
        c.held_bytes + join
    );
    drop(logs_kept);
}
