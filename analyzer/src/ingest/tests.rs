//! Hand-built OTLP messages through the hub; the OTLP specification's own example payloads
//! (`testdata/`, copied from the opentelemetry-proto repository) through the decoders.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use super::receiver::{decode, inflate};
use super::*;

const S: u64 = 1_000_000_000;
/// 2026-12-01T10:00:00Z in ns.
const T0: u64 = 1_796_119_200 * S;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..KeyValue::default()
    }
}

fn resource(pairs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: pairs.iter().map(|(k, v)| kv(k, v)).collect(),
        ..Resource::default()
    })
}

fn log(t: u64, sev_text: &str, sev_num: i32, body: &str) -> LogRecord {
    LogRecord {
        time_unix_nano: t,
        severity_text: sev_text.into(),
        severity_number: sev_num,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body.into())),
        }),
        ..LogRecord::default()
    }
}

/// Resource attributes.
type Attrs<'a> = &'a [(&'a str, &'a str)];

fn logs_req(groups: Vec<(Attrs<'_>, Vec<LogRecord>)>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(attrs, recs)| ResourceLogs {
                resource: resource(attrs),
                scope_logs: vec![ScopeLogs {
                    log_records: recs,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            })
            .collect(),
    }
}

fn hub() -> Hub {
    let h = Hub::new(DEFAULT_BUDGET_BYTES);
    h.register(
        "a1",
        vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "v1".into()),
        ],
        vec![
            ("service.name".into(), "checkout".into()),
            ("service.version".into(), "v2".into()),
        ],
        10.0,
    );
    h
}

const V1: &[(&str, &str)] = &[
    ("service.name", "checkout"),
    ("service.version", "v1"),
    ("k8s.pod.name", "checkout-v1-a"),
];
const V2: &[(&str, &str)] = &[
    ("service.name", "checkout"),
    ("service.version", "v2"),
    ("k8s.pod.name", "checkout-v2-a"),
];
const OTHER: &[(&str, &str)] = &[("service.name", "frontend"), ("service.version", "v2")];

#[test]
fn the_first_routed_record_is_told_once_and_unmatched_ones_tell_nothing() {
    let h = hub();
    assert!(h.first_record("nope").is_none());
    let mut first = h.first_record("a1").unwrap();
    h.logs(logs_req(vec![(OTHER, vec![log(T0, "INFO", 9, "x")])]), 10)
        .unwrap();
    assert!(
        first.try_recv().is_err(),
        "a record no side takes is not one"
    );
    h.logs(logs_req(vec![(V2, vec![log(T0, "INFO", 9, "y")])]), 10)
        .unwrap();
    assert!(first.try_recv().is_ok());
    // Asked again after the fact: told at once.
    assert!(h.first_record("a1").unwrap().try_recv().is_ok());
}

#[test]
fn logs_go_to_the_side_their_resource_matches() {
    let h = hub();
    let req = logs_req(vec![
        (
            V1,
            vec![log(T0, "INFO", 9, "ok"), log(T0 + S, "", 9, "ok 2")],
        ),
        (
            V2,
            vec![
                log(T0, "", 17, "payment failed"),
                log(0, "INFO", 9, "no time"),
            ],
        ),
        (OTHER, vec![log(T0, "INFO", 9, "x"); 3]),
    ]);
    let o = h.logs(req, 100).unwrap();
    assert_eq!((o.accepted, o.rejected, o.unmatched), (3, 1, 3));
    assert!(
        o.message().contains("without time_unix_nano"),
        "{}",
        o.message()
    );
    assert!(o
        .message()
        .contains("3 records matched no running analysis"));
    let [b, c] = h.drain("a1", 0.0).unwrap();
    assert_eq!(b.logs.len(), 2);
    assert_eq!(b.logs[0].severity.as_deref(), Some("INFO"));
    // No severity text: the name of its number (17 = ERROR).
    assert_eq!(b.logs[1].severity.as_deref(), Some("INFO"));
    assert_eq!(c.logs.len(), 1);
    assert_eq!(c.logs[0].severity.as_deref(), Some("ERROR"));
    assert_eq!(c.logs[0].body, "payment failed");
    assert_eq!(c.logs[0].time, Some(1_796_119_200.0));
    // Drained: nothing left.
    let [b, c] = h.drain("a1", 0.0).unwrap();
    assert!(b.logs.is_empty() && c.logs.is_empty());
    let cnt = h.counters();
    assert_eq!(cnt.accepted[0].load(Ordering::Relaxed), 3);
    assert_eq!(cnt.refused[0].load(Ordering::Relaxed), 1);
    assert_eq!(cnt.dropped[0].load(Ordering::Relaxed), 3);
    assert_eq!(cnt.bytes[0].load(Ordering::Relaxed), 100);
}

#[test]
fn drained_records_come_in_time_order_arrival_order_among_equals() {
    let h = hub();
    // Two exporters' batches interleaved in time, as concurrent senders deliver them.
    for (first, bodies) in [(2, ["c", "e", "g"]), (1, ["a", "d", "f"])] {
        let recs = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| log(T0 + (first + 2 * i as u64) * S, "INFO", 9, b))
            .collect();
        h.logs(logs_req(vec![(V1, recs)]), 10).unwrap();
    }
    // Same time as "a", arrived after it.
    h.logs(logs_req(vec![(V1, vec![log(T0 + S, "INFO", 9, "b")])]), 10)
        .unwrap();
    let spans = vec![
        span(1, 1, None, "late", T0 + 3 * S, 1),
        span(1, 2, None, "early", T0 + S, 1),
        span(1, 3, None, "mid", T0 + 2 * S, 1),
        // Same time as "early", arrived after it (the sort moves keys, then the spans).
        span(1, 4, None, "early too", T0 + S, 1),
    ];
    h.traces(traces_req(vec![(V1, spans)]), 10).unwrap();
    let [b, _] = h.drain("a1", 0.0).unwrap();
    let bodies: Vec<&str> = b.logs.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["a", "b", "c", "d", "e", "f", "g"]);
    let ops: Vec<&str> = b.spans.iter().map(|s| s.operation.as_str()).collect();
    assert_eq!(ops, ["early", "early too", "mid", "late"]);
}

#[test]
fn a_matcher_missing_from_the_resource_may_be_a_scope_attribute() {
    let h = hub();
    let mut req = logs_req(vec![(
        &[("service.name", "checkout")],
        vec![log(T0, "", 0, "x")],
    )]);
    req.resource_logs[0].scope_logs[0].scope = Some(InstrumentationScope {
        name: "lib".into(),
        attributes: vec![kv("service.version", "v2")],
        ..InstrumentationScope::default()
    });
    assert_eq!(h.logs(req, 1).unwrap().accepted, 1);
    let [b, c] = h.drain("a1", 0.0).unwrap();
    assert_eq!((b.logs.len(), c.logs.len()), (0, 1));
    // A value of another type is compared as text: int 2 is not "v2".
    let mut req = logs_req(vec![(
        &[("service.name", "checkout")],
        vec![log(T0, "", 0, "x")],
    )]);
    req.resource_logs[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(KeyValue {
            key: "service.version".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(2)),
            }),
            ..KeyValue::default()
        });
    assert_eq!(h.logs(req, 1).unwrap().unmatched, 1);
}

#[test]
fn an_empty_body_takes_the_exception_attributes_and_a_huge_one_is_capped() {
    let h = hub();
    let mut r = log(T0, "ERROR", 17, "");
    r.body = None;
    r.attributes = vec![
        kv("exception.type", "ValueError"),
        kv("exception.message", "bad card"),
    ];
    let huge = log(
        T0,
        "INFO",
        9,
        &"é".repeat(crate::telemetry::MAX_LOG_BODY_BYTES),
    );
    let o = h.logs(logs_req(vec![(V2, vec![r, huge])]), 1).unwrap();
    assert_eq!(o.capped, 1);
    let [_, c] = h.drain("a1", 0.0).unwrap();
    assert_eq!(c.logs[0].body, "ValueError: bad card");
    assert_eq!(c.logs[1].body.len(), crate::telemetry::MAX_LOG_BODY_BYTES);
    assert_eq!(h.counters().capped[0].load(Ordering::Relaxed), 1);
}

fn span(trace: u8, id: u8, parent: Option<u8>, name: &str, start: u64, ms: u64) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + ms * 1_000_000,
        ..Span::default()
    }
}

fn traces_req(groups: Vec<(Attrs<'_>, Vec<Span>)>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(attrs, spans)| ResourceSpans {
                resource: resource(attrs),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            })
            .collect(),
    }
}

#[test]
fn spans_convert_with_hex_ids_duration_and_status() {
    let h = hub();
    let mut s = span(0xab, 0x01, None, "GET /pay", T0, 250);
    s.status = Some(Status {
        code: status::StatusCode::Error as i32,
        ..Status::default()
    });
    let bad = span(0, 0x02, None, "zero trace id", T0, 1);
    let mut backwards = span(0xab, 0x03, None, "ends first", T0, 0);
    backwards.end_time_unix_nano = T0 - 1;
    let long = span(0xab, 0x04, None, &"ü".repeat(600), T0, 1);
    let o = h
        .traces(traces_req(vec![(V2, vec![s, bad, backwards, long])]), 1)
        .unwrap();
    assert_eq!((o.accepted, o.rejected, o.capped), (2, 2, 1));
    assert!(
        o.message().contains("1 records were kept cut"),
        "{}",
        o.message()
    );
    assert_eq!(h.counters().capped[1].load(Ordering::Relaxed), 1);
    let [_, c] = h.drain("a1", 0.0).unwrap();
    // 600 two-byte characters cut at a character boundary within 1 KiB.
    assert_eq!(c.spans[1].operation, "ü".repeat(512));
    let got = &c.spans[0];
    assert_eq!(got.trace_id, "ab".repeat(16));
    assert_eq!(got.span_id, "01".repeat(8));
    assert_eq!(got.parent_id, None);
    assert_eq!(got.operation, "GET /pay");
    assert_eq!(got.start, 1_796_119_200.0);
    assert_eq!(got.duration_ms, 250.0);
    assert_eq!(got.error, Some(true));
    assert!(got.caller.is_none());
}

#[test]
fn a_parent_on_another_service_becomes_a_callers_span_in_either_order() {
    for child_first in [true, false] {
        let h = hub();
        // frontend (no scope selects it) calls checkout v2: trace 7, frontend span 1 → child 2.
        let parent = span(7, 1, None, "frontend GET /", T0, 300);
        let child = span(7, 2, Some(1), "POST /pay", T0 + S / 10, 120);
        // A child of a parent on the same pod is not an edge: span 3 → 2 both on v2.
        let inner = span(7, 3, Some(2), "db query", T0 + S / 5, 10);
        let (first, second) = if child_first {
            (
                traces_req(vec![(V2, vec![child, inner])]),
                traces_req(vec![(OTHER, vec![parent])]),
            )
        } else {
            (
                traces_req(vec![(OTHER, vec![parent])]),
                traces_req(vec![(V2, vec![child, inner])]),
            )
        };
        let o1 = h.traces(first, 1).unwrap();
        let o2 = h.traces(second, 1).unwrap();
        assert_eq!(o1.accepted + o2.accepted, 2, "two spans selected");
        let [b, c] = h.drain("a1", 0.0).unwrap();
        assert!(b.spans.is_empty());
        let callers: Vec<_> = c.spans.iter().filter(|s| s.caller.is_some()).collect();
        assert_eq!(callers.len(), 1, "child_first {child_first}: {:?}", c.spans);
        let e = callers[0];
        assert_eq!(e.span_id, "01".repeat(8));
        assert_eq!(e.operation, "frontend GET /");
        assert_eq!(e.duration_ms, 300.0);
        let edge = e.caller.as_ref().unwrap();
        assert_eq!(edge.callee_span_id, "02".repeat(8));
        assert_eq!(edge.callee_operation, "POST /pay");
        assert_eq!(edge.callee_duration_ms, 120.0);
        // The two own spans too.
        assert_eq!(c.spans.iter().filter(|s| s.caller.is_none()).count(), 2);
    }
}

#[test]
fn the_join_forgets_after_its_delay_and_counts_the_orphans() {
    let mut j = join::Join::default();
    let child = convert::span(span(9, 2, Some(1), "c", T0, 1)).unwrap();
    let to = vec![(1, Role::Canary)];
    let mut out = Vec::new();
    j.add(child, &Arc::from("pod-b"), &to, 1000.0, &mut out);
    assert!(out.is_empty());
    assert_eq!(j.held(), (1, 1));
    assert!(j.bytes() > 0);
    // Still waiting just before the delay; gone after it.
    assert_eq!(j.expire(1000.0 + join::MAX_DELAY_S - 1.0), 0);
    assert_eq!(j.expire(1000.0 + join::MAX_DELAY_S + 1.0), 1);
    assert_eq!(j.held(), (0, 0));
    assert_eq!(j.bytes(), 0);
    // The parent arriving now joins nothing.
    let parent = convert::span(span(9, 1, None, "p", T0, 5)).unwrap();
    j.add(parent, &Arc::from("pod-a"), &[], 1062.0, &mut out);
    assert!(out.is_empty());
}

fn number(t: u64, start: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: t,
        start_time_unix_nano: start,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..NumberDataPoint::default()
    }
}

fn metrics_req(who: &[(&str, &str)], metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(who),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Metric::default()
    }
}

#[test]
fn cumulative_counters_become_increments_per_step_across_a_reset() {
    let h = hub();
    let cum = AggregationTemporality::Cumulative as i32;
    // Started at T0; 5 by T0+5s, 8 by T0+15s; restarted at T0+20s, 2 by T0+25s.
    let req = metrics_req(
        V2,
        vec![metric(
            "requests",
            Data::Sum(Sum {
                data_points: vec![
                    number(T0 + 5 * S, T0, 5.0),
                    number(T0 + 15 * S, T0, 8.0),
                    number(T0 + 25 * S, T0 + 20 * S, 2.0),
                ],
                aggregation_temporality: cum,
                is_monotonic: true,
            }),
        )],
    );
    assert_eq!(h.metrics(req, 1).unwrap().accepted, 3);
    let t0 = 1_796_119_200.0;
    // Only steps ending by T0+20s close.
    let [_, c] = h.drain("a1", t0 + 20.0).unwrap();
    assert_eq!(
        c.metrics,
        vec![
            (t0 + 5.0, "requests".into(), 5.0),
            (t0 + 15.0, "requests".into(), 3.0)
        ]
    );
    let [_, c] = h.drain("a1", t0 + 30.0).unwrap();
    assert_eq!(c.metrics, vec![(t0 + 25.0, "requests".into(), 2.0)]);
    // Two processes with one identity and different starts, interleaved: each differenced on
    // its own (2 + 3 at T0+41s, then +1 and +1), never mistaken for resets.
    let two = metrics_req(
        V2,
        vec![metric(
            "requests",
            Data::Sum(Sum {
                data_points: vec![
                    number(T0 + 41 * S, T0 + 40 * S, 2.0),
                    number(T0 + 41 * S, T0 + 39 * S, 3.0),
                    number(T0 + 42 * S, T0 + 40 * S, 3.0),
                    number(T0 + 42 * S, T0 + 39 * S, 4.0),
                ],
                aggregation_temporality: cum,
                is_monotonic: true,
            }),
        )],
    );
    assert_eq!(h.metrics(two, 1).unwrap().accepted, 4);
    let [_, c] = h.drain("a1", t0 + 50.0).unwrap();
    assert_eq!(c.metrics, vec![(t0 + 45.0, "requests".into(), 7.0)]);
    // A point for a step already closed is late: counted, not kept.
    let late = metrics_req(
        V2,
        vec![metric(
            "requests",
            Data::Sum(Sum {
                data_points: vec![number(T0 + 12 * S, 0, 1.0)],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            }),
        )],
    );
    assert_eq!(h.metrics(late, 1).unwrap().accepted, 0);
    let [_, c] = h.drain("a1", t0 + 60.0).unwrap();
    assert!(c.metrics.is_empty());
    assert_eq!(c.late_points, 1);
}

#[test]
fn gauges_average_deltas_add_and_histograms_give_mean_and_count() {
    let h = hub();
    let delta = AggregationTemporality::Delta as i32;
    let mut g2 = number(T0 + 3 * S, 0, 30.0);
    g2.attributes = vec![kv("cpu", "1")];
    let req = metrics_req(
        V1,
        vec![
            metric(
                "cpu",
                Data::Gauge(Gauge {
                    data_points: vec![number(T0 + 2 * S, 0, 10.0), g2],
                }),
            ),
            metric(
                "errors",
                Data::Sum(Sum {
                    data_points: vec![number(T0 + S, 0, 2.0), number(T0 + 9 * S, 0, 4.0)],
                    aggregation_temporality: delta,
                    is_monotonic: true,
                }),
            ),
            metric(
                "latency",
                Data::Histogram(Histogram {
                    data_points: vec![
                        HistogramDataPoint {
                            time_unix_nano: T0 + 4 * S,
                            count: 4,
                            sum: Some(2.0),
                            ..HistogramDataPoint::default()
                        },
                        HistogramDataPoint {
                            time_unix_nano: T0 + 6 * S,
                            count: 1,
                            sum: Some(3.0),
                            ..HistogramDataPoint::default()
                        },
                    ],
                    aggregation_temporality: delta,
                }),
            ),
        ],
    );
    assert_eq!(h.metrics(req, 1).unwrap().accepted, 6);
    let t0 = 1_796_119_200.0;
    let [b, _] = h.drain("a1", t0 + 10.0).unwrap();
    let mut got = b.metrics;
    got.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        got,
        vec![
            (t0 + 5.0, "cpu".into(), 20.0),
            (t0 + 5.0, "errors".into(), 6.0),
            (t0 + 5.0, "latency".into(), 1.0),
            (t0 + 5.0, "latency.count".into(), 5.0),
        ]
    );
}

#[test]
fn over_budget_a_request_is_refused_whole_and_unregistering_frees_the_bytes() {
    let h = Hub::new(4096);
    h.register(
        "a1",
        vec![("v".into(), "1".into())],
        vec![("v".into(), "2".into())],
        10.0,
    );
    let big = || {
        logs_req(vec![(
            &[("v", "2")],
            vec![log(T0, "INFO", 9, &"x".repeat(1000)); 3],
        )])
    };
    assert_eq!(h.logs(big(), 100).unwrap().accepted, 3);
    assert!(h.used() >= 3000);
    let err = h.logs(big(), 1200).unwrap_err();
    let Refusal::OverBudget {
        budget,
        retry_after_s,
        ..
    } = err;
    assert_eq!(budget, 4096);
    assert!(retry_after_s > 0);
    assert_eq!(h.counters().refused[0].load(Ordering::Relaxed), 3);
    // The drained records stay counted (the session holds them) until released or the
    // analysis ends.
    let [_, c] = h.drain("a1", 0.0).unwrap();
    assert!(h.used() >= 3000);
    assert!(c.held_bytes >= 3000 && c.held_bytes <= h.used());
    h.release("a1", 1000);
    assert_eq!(h.used(), c.held_bytes - 1000);
    h.unregister("a1");
    assert_eq!(h.used(), 0);
    assert!(h.drain("a1", 0.0).is_none());
}

#[test]
fn the_specifications_example_payloads_decode_and_route() {
    let h = Hub::new(DEFAULT_BUDGET_BYTES);
    h.register(
        "ex",
        vec![("service.name".into(), "my.service".into())],
        vec![("service.name".into(), "other".into())],
        1.0,
    );
    let logs: ExportLogsServiceRequest =
        decode(true, include_bytes!("testdata/logs.json")).unwrap();
    let o = h.logs(logs, 1).unwrap();
    assert_eq!((o.accepted, o.rejected), (1, 0));
    let traces: ExportTraceServiceRequest =
        decode(true, include_bytes!("testdata/trace.json")).unwrap();
    assert_eq!(h.traces(traces, 1).unwrap().accepted, 1);
    let metrics: ExportMetricsServiceRequest =
        decode(true, include_bytes!("testdata/metrics.json")).unwrap();
    // Counter, gauge, histogram, exponential histogram: one point each.
    assert_eq!(h.metrics(metrics, 1).unwrap().accepted, 4);
    let [b, _] = h.drain("ex", 2e9).unwrap();
    assert_eq!(b.logs[0].body, "Example log record");
    assert_eq!(b.logs[0].severity.as_deref(), Some("Information"));
    assert_eq!(b.logs[0].time, Some(1_544_712_660.3));
    let s = &b.spans[0];
    assert_eq!(s.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.parent_id.as_deref(), Some("eee19b7ec3c1b173"));
    assert_eq!(s.duration_ms, 1000.0);
    let names: Vec<&str> = b.metrics.iter().map(|m| m.1.as_str()).collect();
    for n in [
        "my.counter",
        "my.gauge",
        "my.histogram",
        "my.histogram.count",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    // The same logs as protobuf round-trip through the protobuf decoder.
    let again: ExportLogsServiceRequest =
        decode(true, include_bytes!("testdata/logs.json")).unwrap();
    let bytes = again.encode_to_vec();
    let back: ExportLogsServiceRequest = decode(false, &bytes).unwrap();
    assert_eq!(back, again);
}

#[test]
fn malformed_payloads_are_named() {
    let e = decode::<ExportLogsServiceRequest>(false, &[0x0a, 0xff, 0xff]).unwrap_err();
    assert!(e.starts_with("body: invalid OTLP protobuf"), "{e}");
    let e = decode::<ExportLogsServiceRequest>(true, b"{\"resourceLogs\": 3}").unwrap_err();
    assert!(
        e.starts_with("body: invalid OTLP/JSON") && e.contains("line 1"),
        "{e}"
    );
    let mut h = axum::http::HeaderMap::new();
    h.insert("content-encoding", "gzip".parse().unwrap());
    let e = inflate(&h, b"not gzip").unwrap_err();
    assert!(e.contains("not valid gzip"), "{e}");
    h.insert("content-encoding", "br".parse().unwrap());
    assert!(inflate(&h, b"x")
        .unwrap_err()
        .contains("`br` is not supported"));
}

#[test]
fn gzip_bodies_inflate_within_the_limit() {
    use std::io::Write as _;
    let mut h = axum::http::HeaderMap::new();
    h.insert("content-encoding", "gzip".parse().unwrap());
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(b"hello").unwrap();
    assert_eq!(inflate(&h, &z.finish().unwrap()).unwrap(), b"hello");
    // A bomb: 17 MiB of zeros inflates past the limit. Best compression: at the fastest level
    // the output size depends on flate2's backend, which feature unification picks (a workspace
    // build gave more than 100 kB where the analyzer alone gave less).
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; receiver::MAX_OTLP_BYTES + (1 << 20)])
        .unwrap();
    let small = z.finish().unwrap();
    assert!(small.len() < 100_000);
    assert!(inflate(&h, &small)
        .unwrap_err()
        .contains("inflates to more than"));
}

#[test]
fn the_grpc_refusal_carries_retry_info() {
    let st = receiver::refusal_status(&Refusal::OverBudget {
        budget: 10,
        used: 9,
        retry_after_s: 5,
    });
    assert_eq!(st.code(), tonic::Code::ResourceExhausted);
    let details = receiver::RpcStatus::decode(st.details()).unwrap();
    assert_eq!(details.code, 8);
    assert_eq!(
        details.details[0].type_url,
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    let info = receiver::RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(info.retry_delay.unwrap().seconds, 5);
}

async fn post(
    app: &axum::Router,
    path: &str,
    ctype: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    use tower::ServiceExt as _;
    let mut req = axum::http::Request::post(path).header("content-type", ctype);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = app
        .clone()
        .oneshot(req.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn otlp_http_answers_per_the_specification() {
    let hub = Arc::new(Hub::new(DEFAULT_BUDGET_BYTES));
    hub.register(
        "a1",
        vec![("v".into(), "1".into())],
        vec![("v".into(), "2".into())],
        10.0,
    );
    let tokens =
        crate::service::auth::Tokens::parse("ingest ingest-token-1\nread read-token-11\n", "t")
            .unwrap();
    let app = receiver::http_router(hub.clone(), Some(tokens));
    let req = logs_req(vec![
        (&[("v", "2")], vec![log(T0, "ERROR", 17, "boom")]),
        (&[("v", "3")], vec![log(T0, "INFO", 9, "elsewhere")]),
    ]);
    // Protobuf in, protobuf out, with the unmatched record as a warning.
    let (code, h, body) = post(
        &app,
        "/v1/logs",
        "application/x-protobuf",
        Some("ingest-token-1"),
        req.encode_to_vec(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(h["content-type"], "application/x-protobuf");
    let resp = opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse::decode(
        body.as_slice(),
    )
    .unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_log_records, 0);
    assert!(ps
        .error_message
        .contains("1 records matched no running analysis"));
    // JSON in, JSON out.
    let json = serde_json::to_vec(&req).unwrap();
    let (code, h, body) = post(
        &app,
        "/v1/logs",
        "application/json",
        Some("ingest-token-1"),
        json,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(h["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], 0, "{v}");
    let [_, c] = hub.drain("a1", 0.0).unwrap();
    assert_eq!(c.logs.len(), 2);
    // Malformed: 400, a google.rpc.Status saying what is wrong.
    let (code, _, body) = post(
        &app,
        "/v1/traces",
        "application/json",
        Some("ingest-token-1"),
        b"{\"resourceSpans\": [{\"scopeSpans\": 7}]}".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap().contains("invalid OTLP/JSON"),
        "{v}"
    );
    let (code, _, body) = post(
        &app,
        "/v1/metrics",
        "application/x-protobuf",
        Some("ingest-token-1"),
        vec![0xff; 9],
    )
    .await;
    assert_eq!(code, 400);
    let st = receiver::RpcStatus::decode(body.as_slice()).unwrap();
    assert!(
        st.message.contains("invalid OTLP protobuf"),
        "{}",
        st.message
    );
    // Unsupported media type.
    let (code, _, _) = post(
        &app,
        "/v1/logs",
        "text/plain",
        Some("ingest-token-1"),
        vec![],
    )
    .await;
    assert_eq!(code, 415);
    // Tokens: none → 401; read (above ingest) is accepted.
    let (code, _, _) = post(&app, "/v1/logs", "application/x-protobuf", None, vec![]).await;
    assert_eq!(code, 401);
    let (code, _, _) = post(
        &app,
        "/v1/logs",
        "application/x-protobuf",
        Some("read-token-11"),
        vec![],
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn otlp_http_over_budget_is_429_with_retry_after() {
    let hub = Arc::new(Hub::new(1000));
    let app = receiver::http_router(hub, None);
    let req = logs_req(vec![(
        &[("v", "2")],
        vec![log(T0, "INFO", 9, &"y".repeat(2000))],
    )]);
    let (code, h, body) = post(
        &app,
        "/v1/logs",
        "application/json",
        None,
        serde_json::to_vec(&req).unwrap(),
    )
    .await;
    assert_eq!(code, 429);
    assert_eq!(h["retry-after"], "5");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 8);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn all(json: bool, b: &[u8]) {
        let _ = decode::<ExportLogsServiceRequest>(json, b);
        let _ = decode::<ExportTraceServiceRequest>(json, b);
        let _ = decode::<ExportMetricsServiceRequest>(json, b);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Arbitrary bytes never panic the decoders, and whatever decodes routes without panic.
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            all(false, &b);
            all(true, &b);
            let h = hub();
            if let Ok(r) = decode::<ExportTraceServiceRequest>(false, &b) { let _ = h.traces(r, b.len()); }
            if let Ok(r) = decode::<ExportMetricsServiceRequest>(false, &b) { let _ = h.metrics(r, b.len()); }
            if let Ok(r) = decode::<ExportLogsServiceRequest>(false, &b) { let _ = h.logs(r, b.len()); }
        }

        /// A valid payload with bytes flipped: protobuf and JSON decoders and the hub hold.
        #[test]
        fn mutated_payloads_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            json in any::<bool>(),
        ) {
            let mut b: Vec<u8> = if json {
                include_bytes!("testdata/metrics.json").to_vec()
            } else {
                let r: ExportMetricsServiceRequest = decode(true, include_bytes!("testdata/metrics.json")).unwrap();
                r.encode_to_vec()
            };
            for (i, x) in flips {
                let at = i.index(b.len());
                b[at] = x;
            }
            all(json, &b);
            let h = hub();
            if let Ok(r) = decode::<ExportMetricsServiceRequest>(json, &b) { let _ = h.metrics(r, b.len()); }
            if let Ok(r) = decode::<ExportTraceServiceRequest>(json, &b) { let _ = h.traces(r, b.len()); }
        }
    }
}

#[test]
fn one_pod_before_and_after_is_split_by_the_side_windows_and_the_watermark_follows_event_time() {
    let h = Hub::new(DEFAULT_BUDGET_BYTES);
    let pod = || vec![("k8s.pod.name".to_owned(), "p-1".to_owned())];
    h.register("ba", pod(), pod(), 5.0);
    let t0 = 1_796_119_200.0;
    // Baseline [t0 - 600, t0), canary [t0, t0 + 120).
    h.set_windows("ba", [Some((t0 - 600.0, t0)), Some((t0, t0 + 120.0))]);
    assert_eq!(h.progress("ba"), Some((f64::NEG_INFINITY, false)));
    const POD: &[(&str, &str)] = &[("k8s.pod.name", "p-1")];
    let req = logs_req(vec![(
        POD,
        vec![
            log(T0 - 60 * S, "INFO", 9, "before"),
            log(T0, "INFO", 9, "at the start"),
            log(T0 + 30 * S, "INFO", 9, "after"),
            // Outside both windows: neither side's.
            log(T0 + 500 * S, "INFO", 9, "long after"),
        ],
    )]);
    h.logs(req, 10).unwrap();
    // The watermark is the latest event time received, in a window or not.
    assert_eq!(h.progress("ba"), Some((t0 + 500.0, false)));
    // A child on the pod and its caller on another pod: the edge goes to the side whose window
    // holds the child.
    let req = traces_req(vec![
        (
            &[("k8s.pod.name", "frontend-1")],
            vec![span(7, 1, None, "GET /", T0 + 10 * S, 50)],
        ),
        (
            POD,
            vec![span(7, 2, Some(1), "GetAds", T0 + 10 * S + 1, 40)],
        ),
    ]);
    h.traces(req, 10).unwrap();
    let metrics = metrics_req(
        POD,
        vec![metric(
            "cpu",
            Data::Gauge(Gauge {
                data_points: vec![number(T0 - 100 * S, 0, 1.0), number(T0 + 12 * S, 0, 3.0)],
            }),
        )],
    );
    h.metrics(metrics, 10).unwrap();
    let [b, c] = h.drain("ba", t0 + 120.0).unwrap();
    let bodies = |d: &Drained| d.logs.iter().map(|r| r.body.clone()).collect::<Vec<_>>();
    assert_eq!(bodies(&b), ["before"]);
    assert_eq!(bodies(&c), ["at the start", "after"]);
    assert!(b.spans.is_empty());
    // The child itself and the caller's span with its edge.
    assert_eq!(c.spans.len(), 2);
    assert_eq!(c.spans.iter().filter(|s| s.caller.is_some()).count(), 1);
    // Each point on its own side only (at the middle of its 5-s step).
    assert_eq!(b.metrics, [(t0 - 100.0 + 2.5, "cpu".to_owned(), 1.0)]);
    assert_eq!(c.metrics, [(t0 + 12.5, "cpu".to_owned(), 3.0)]);
    // The end of input is remembered; an unknown id is not.
    assert!(h.end_input("ba"));
    assert_eq!(h.progress("ba"), Some((t0 + 500.0, true)));
    assert!(!h.end_input("nope"));
    assert_eq!(h.progress("nope"), None);
}

#[test]
fn an_aligned_grid_puts_each_reading_in_the_interval_that_holds_it() {
    let h = Hub::new(DEFAULT_BUDGET_BYTES);
    let pod = || vec![("k8s.pod.name".to_owned(), "p-1".to_owned())];
    h.register("al", pod(), pod(), 5.0);
    // An analysis starting at :57 (off the epoch's 5-s grid), intervals of 30 s.
    let t0 = 1_796_119_200.0 + 57.0;
    h.align("al", t0);
    const POD: &[(&str, &str)] = &[("k8s.pod.name", "p-1")];
    let at = |s: u64| T0 + 57 * S + s * S;
    let metrics = metrics_req(
        POD,
        vec![metric(
            "cpu",
            Data::Gauge(Gauge {
                // 1 s before the first interval's end, and at it.
                data_points: vec![number(at(29), 0, 1.0), number(at(30), 0, 2.0)],
            }),
        )],
    );
    h.metrics(metrics, 10).unwrap();
    // The first interval takes the first reading only, stamped inside it; on the epoch's grid
    // the step [t0 + 28, t0 + 33) would have straddled the interval's end.
    let [b, _] = h.drain("al", t0 + 30.0).unwrap();
    assert_eq!(b.metrics, [(t0 + 27.5, "cpu".to_owned(), 1.0)]);
    let [b, _] = h.drain("al", t0 + 60.0).unwrap();
    assert_eq!(b.metrics, [(t0 + 32.5, "cpu".to_owned(), 2.0)]);
}
