"""Sends logs, spans and metrics to `vigil serve` with the real OpenTelemetry Python SDK and its
OTLP exporters (tests/service_otlp.rs runs it).

    otlp_send.py --protocol grpc|http --endpoint URL --token T --version v1|v2 --n N
                 [--duration SECONDS] [--errors]

One resource per run: service.name=shop, service.version=VERSION. It logs N records through the
SDK's logging handler (ERROR "payment failed: card declined" with --errors, else INFO "order
placed"), creates N server spans (status ERROR with --errors), each the child of a client span on
a second resource (service.name=frontend: a caller on another service, for the caller join; 30 ms
longer outside the child with --errors), and
adds N to a counter `orders` and N observations to a histogram `checkout.duration`. Everything
is spread over --duration seconds (metrics exported every second, so each side has a reading per
second) and flushed before exit; an exporter failure exits non-zero. Prints one JSON line of what it sent.
"""

import argparse
import json
import logging
import sys
import time

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode


class Checked:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner, ok):
        self.inner = inner
        self.ok_value = ok
        self.failures = 0
        self.exports = 0

    def export(self, batch, *a, **kw):
        r = self.inner.export(batch, *a, **kw)
        self.exports += 1
        if r != self.ok_value:
            self.failures += 1
        return r

    def __getattr__(self, name):
        return getattr(self.inner, name)


def exporters(protocol, endpoint, token):
    headers = {"authorization": f"Bearer {token}"}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # https://: TLS, trusting OTEL_EXPORTER_OTLP_CERTIFICATE (read by the exporter).
        kw = dict(endpoint=endpoint, insecure=endpoint.startswith("http://"), headers=headers)
        return OTLPLogExporter(**kw), OTLPSpanExporter(**kw), OTLPMetricExporter(**kw)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers),
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers),
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", headers=headers),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--errors", action="store_true")
    a = p.parse_args()

    # One process, one instance: two senders of one version are two replicas.
    shop = Resource.create({"service.name": "shop", "service.version": a.version,
                            "service.instance.id": f"shop-{a.version}-{a.protocol}"})
    frontend = Resource.create({"service.name": "frontend", "service.version": "f1"})
    log_exp, span_exp, metric_exp = exporters(a.protocol, a.endpoint, a.token)
    log_exp = Checked(log_exp, LogRecordExportResult.SUCCESS)
    span_exp = Checked(span_exp, SpanExportResult.SUCCESS)
    metric_exp = Checked(metric_exp, MetricExportResult.SUCCESS)
    # The caller's spans go through an exporter of their own resource.
    _, caller_exp, _ = exporters(a.protocol, a.endpoint, a.token)
    caller_exp = Checked(caller_exp, SpanExportResult.SUCCESS)

    logs = LoggerProvider(resource=shop)
    logs.add_log_record_processor(BatchLogRecordProcessor(log_exp))
    handler = LoggingHandler(level=logging.INFO, logger_provider=logs)
    log = logging.getLogger(f"shop.{a.protocol}.{a.version}")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)

    traces = TracerProvider(resource=shop)
    traces.add_span_processor(BatchSpanProcessor(span_exp))
    caller_traces = TracerProvider(resource=frontend)
    caller_traces.add_span_processor(BatchSpanProcessor(caller_exp))
    tracer = traces.get_tracer("shop")
    caller_tracer = caller_traces.get_tracer("frontend")

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=1000)
    meters = MeterProvider(resource=shop, metric_readers=[reader])
    meter = meters.get_meter("shop")
    orders = meter.create_counter("orders")
    duration = meter.create_histogram("checkout.duration", unit="ms")

    for i in range(a.n):
        if a.errors:
            log.error("payment failed: card declined for order %d", i)
        else:
            log.info("order placed %d", i)
        # The frontend (another service) calls the shop: the shop's span is its child.
        with caller_tracer.start_as_current_span("GET /buy", kind=SpanKind.CLIENT):
            with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as s:
                time.sleep(0.001)
                if a.errors:
                    s.set_status(Status(StatusCode.ERROR, "declined"))
            if a.errors:
                # The caller waits 30 ms more outside the shop's span (a slow connection to
                # the canary): only the caller's span shows it.
                time.sleep(0.03)
        orders.add(1)
        duration.record((120.0 if a.errors else 40.0) + i % 5)
        if a.duration > 0:
            time.sleep(a.duration / a.n)

    logs.force_flush()
    traces.force_flush()
    caller_traces.force_flush()
    meters.force_flush()
    logs.shutdown()
    traces.shutdown()
    caller_traces.shutdown()
    meters.shutdown()
    failures = {
        "logs": log_exp.failures,
        "spans": span_exp.failures + caller_exp.failures,
        "metrics": metric_exp.failures,
    }
    exports = {
        "logs": log_exp.exports,
        "spans": span_exp.exports + caller_exp.exports,
        "metrics": metric_exp.exports,
    }
    print(json.dumps({"sent": a.n, "failures": failures, "exports": exports}))
    if any(failures.values()) or not all(exports.values()):
        print("an export failed or none happened", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
