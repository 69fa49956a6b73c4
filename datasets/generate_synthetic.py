#!/usr/bin/env python3
"""Seeded generator of the synthetic replay scenarios in datasets/synthetic/.

Real incidents lack the edge cases a canary judge must handle; each scenario here isolates one.
Standard library only; the same seed writes byte-identical files:

    python3 datasets/generate_synthetic.py            # rewrites datasets/synthetic/
    python3 datasets/generate_synthetic.py --seed 7 --out /tmp/syn

The format is the one documented in datasets/README.md (the incident format), so `vigil replay`
reads these exactly as it reads real incidents.
"""

import argparse
import csv
import json
import math
import os
import random
import shutil
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 1, 5, 12, 0, 0, tzinfo=timezone.utc)  # canary start of every scenario
METRICS = ["CpuUsageRate(%)", "MemoryUsage(Mi)", "PodServerLatencyP90(s)", "ErrorCount", "PodWorkload(Ops)"]


def iso(t, ns=False):
    if ns:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}000Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Side:
    """Telemetry of one side, built by the scenario functions."""

    def __init__(self):
        self.metrics = None  # list of dict rows, or None = no file
        self.logs = None  # list of (time, severity, body)
        self.spans = None  # list of dicts
        self.window = None  # (start, end)


def metric_rows(rng, start, minutes, step_s=30, cpu=20.0, mem=300.0, lat=0.05, err=0.0, load=50.0,
                cpu_sd=1.5, lat_sd=0.004, mem_slope_per_min=0.0, lat_scale=None, err_rate=None, constant=False):
    rows = []
    n = int(minutes * 60 / step_s)
    for i in range(n):
        t = start + timedelta(seconds=i * step_s)
        minute = i * step_s / 60.0
        if constant:
            c, m, l, e, w = cpu, mem, lat, err, load
        else:
            w = load * (1 + 0.05 * rng.gauss(0, 1))
            c = max(0.0, cpu + cpu_sd * rng.gauss(0, 1))
            m = mem + mem_slope_per_min * minute + 0.5 * rng.gauss(0, 1)
            l = max(0.001, lat + (lat_scale if lat_scale else lat_sd) * rng.gauss(0, 1))
            lam = err_rate if err_rate is not None else err
            e = poisson(rng, lam)
        rows.append({"timestamp": iso(t), METRICS[0]: f"{c:.4f}", METRICS[1]: f"{m:.4f}",
                     METRICS[2]: f"{l:.5f}", METRICS[3]: str(e), METRICS[4]: f"{w:.3f}"})
    return rows


def poisson(rng, lam):
    if lam <= 0:
        return 0
    l, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= l:
            return k
        k += 1


def spans(rng, start, seconds, per_s=5.0, ops=("GET /api/orders", "SELECT orders"), median_ms=20.0, sigma=0.3,
          slow=1.0, errors=0.0):
    out = []
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(per_s)
        if t >= seconds:
            break
        n += 1
        trace = f"{rng.getrandbits(128):032x}"
        root = f"{rng.getrandbits(64):016x}"
        st = start + timedelta(seconds=t)
        d = median_ms * math.exp(sigma * rng.gauss(0, 1)) * slow
        out.append({"trace_id": trace, "span_id": root, "parent_id": "", "operation": ops[0], "start": iso(st, True),
                    "duration_ms": f"{d:.6f}", "pod": "synthetic-pod", "error": "true" if rng.random() < errors else "false"})
        for op in ops[1:]:
            child = f"{rng.getrandbits(64):016x}"
            out.append({"trace_id": trace, "span_id": child, "parent_id": root, "operation": op,
                        "start": iso(st + timedelta(milliseconds=1), True), "duration_ms": f"{d * 0.3:.6f}",
                        "pod": "synthetic-pod", "error": "false"})
    return out


def logs(rng, start, seconds, per_s=2.0, error_share=0.0, error_body="ERROR o.e.OrderService order failed: timeout"):
    out = []
    t = 0.0
    while True:
        t += rng.expovariate(per_s)
        if t >= seconds:
            break
        st = start + timedelta(seconds=t)
        if rng.random() < error_share:
            out.append((st, "ERROR", f"{st:%H:%M:%S} {error_body} id={rng.randint(1, 9999)}"))
        else:
            out.append((st, "INFO", f"{st:%H:%M:%S} INFO  o.e.OrderController served order id={rng.randint(1, 9999)}"))
    return out


def full_side(rng, start, minutes, core_s, **kw):
    """Metrics over `minutes` from `start`; logs and spans over the last/first `core_s` seconds."""
    s = Side()
    s.window = (start, start + timedelta(minutes=minutes))
    mkw = {k: v for k, v in kw.items() if k in ("cpu", "mem", "lat", "err", "load", "cpu_sd", "lat_sd",
                                                 "mem_slope_per_min", "lat_scale", "err_rate", "constant")}
    s.metrics = metric_rows(rng, start, minutes, **mkw)
    return s


def scenario_before_after(rng, sid, expected, fault, note, base_kw, can_kw, span_kw=None, can_span_kw=None,
                          log_kw=None, can_log_kw=None, base_min=30, can_min=5, core_s=180):
    b = full_side(rng, T0 - timedelta(minutes=base_min), base_min, core_s, **base_kw)
    c = full_side(rng, T0, can_min, core_s, **can_kw)
    core_b = (T0 - timedelta(seconds=core_s), T0)
    core_c = (T0, T0 + timedelta(seconds=core_s))
    if span_kw is not None:
        b.spans = spans(rng, core_b[0], core_s, **span_kw)
        c.spans = spans(rng, core_c[0], core_s, **(can_span_kw if can_span_kw is not None else span_kw))
    if log_kw is not None:
        b.logs = logs(rng, core_b[0], core_s, **log_kw)
        c.logs = logs(rng, core_c[0], core_s, **(can_log_kw if can_log_kw is not None else log_kw))
    return dict(id=sid, expected=expected, fault=fault, note=note, baseline=b, canary=c, core_b=core_b, core_c=core_c)


def write(out, sc, seed):
    d = os.path.join(out, sc["id"])
    os.makedirs(d, exist_ok=True)
    files = {}
    coverage = {}
    windows = {"metrics": {}, "logs": {}, "traces": {}}
    for name in ("baseline", "canary"):
        side = sc[name]
        core = sc["core_b"] if name == "baseline" else sc["core_c"]
        sd = os.path.join(d, name)
        os.makedirs(sd, exist_ok=True)
        present = []
        if side.metrics is not None:
            with open(os.path.join(sd, "metrics.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["timestamp"] + METRICS, lineterminator="\n")
                w.writeheader()
                w.writerows(side.metrics)
            present.append("metrics.csv")
        if side.logs is not None:
            with open(os.path.join(sd, "logs.jsonl"), "w") as f:
                for t, sev, body in side.logs:
                    f.write(json.dumps({"time": iso(t, True), "severity": sev, "body": body,
                                        "trace_id": "", "span_id": ""}) + "\n")
            present.append("logs.jsonl")
        if side.spans is not None:
            with open(os.path.join(sd, "spans.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["trace_id", "span_id", "parent_id", "operation", "start",
                                                  "duration_ms", "pod", "error"], lineterminator="\n")
                w.writeheader()
                w.writerows(side.spans)
            present.append("spans.csv")
        files[name] = present
        core_len = (core[1] - core[0]).total_seconds()
        coverage[name] = {
            "metrics_points": len(side.metrics) if side.metrics is not None else 0,
            "log_lines": len(side.logs) if side.logs is not None else None,
            "log_seconds_covered": core_len if side.logs is not None else None,
            "spans": len(side.spans) if side.spans is not None else None,
            "trace_seconds_covered": core_len if side.spans is not None else None,
        }
        if side.window is not None:
            windows["metrics"][name] = {"start": iso(side.window[0]), "end": iso(side.window[1])}
        windows["logs"][name] = {"start": iso(core[0]), "end": iso(core[1])}
        windows["traces"][name] = {"start": iso(core[0]), "end": iso(core[1])}
    meta = {
        "id": sc["id"],
        "split": "synthetic",
        "system": "synthetic",
        "day": T0.strftime("%Y-%m-%d"),
        "pod": "synthetic-pod",
        "service": "synthetic",
        "expected": sc["expected"],
        "fault_type": sc["fault"],
        "inject_time_utc": iso(T0) if sc["expected"] == "fail" else None,
        "baseline_window": {"start": iso(sc["core_b"][0]), "end": iso(sc["core_b"][1])},
        "canary_window": {"start": iso(sc["core_c"][0]), "end": iso(sc["core_c"][1])},
        "windows": windows,
        "coverage": coverage,
        "files": files,
        "notes": [sc["note"]],
        "provenance": {"generator": "datasets/generate_synthetic.py", "seed": seed, "license": "Apache-2.0"},
    }
    with open(os.path.join(d, "scenario.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def build(seed):
    rng = random.Random(seed)
    normal = dict(cpu=20.0, mem=300.0, lat=0.05, err=0.0, load=50.0)
    sp = dict(per_s=1.5)
    lg = dict(per_s=2.0)
    out = []

    s = scenario_before_after(rng, "syn-no-canary-data", "pass", None,
                              "the canary recorded nothing at all (no files): the verdict must be Inconclusive, never Pass",
                              normal, normal, sp, sp, lg, lg)
    s["canary"].metrics = s["canary"].logs = s["canary"].spans = None
    s["canary"].window = None
    out.append(s)

    s = scenario_before_after(rng, "syn-no-baseline-data", "fail", "cpu_contention",
                              "the baseline recorded nothing; a canary with 90 % CPU must still not Pass",
                              normal, dict(normal, cpu=90.0), None, None, None, None)
    s["baseline"].metrics = None
    s["baseline"].window = None
    out.append(s)

    out.append(scenario_before_after(rng, "syn-constant-metrics-pass", "pass", None,
                                     "every metric is exactly constant on both sides (no variance for a rank test)",
                                     dict(normal, constant=True), dict(normal, constant=True)))
    out.append(scenario_before_after(rng, "syn-constant-metrics-jump", "fail", "cpu_contention",
                                     "constant baseline CPU 20 %, constant canary CPU 60 %",
                                     dict(normal, constant=True), dict(normal, cpu=60.0, constant=True)))
    out.append(scenario_before_after(rng, "syn-zero-baseline-errors-pass", "pass", None,
                                     "error counts are zero in the baseline and almost zero in the canary",
                                     dict(normal, err_rate=0.0), dict(normal, err_rate=0.1)))
    out.append(scenario_before_after(rng, "syn-zero-baseline-errors-fail", "fail", "return",
                                     "error counts are zero in the baseline and about 3 per sample in the canary",
                                     dict(normal, err_rate=0.0), dict(normal, err_rate=3.0)))
    out.append(scenario_before_after(rng, "syn-low-traffic", "pass", None,
                                     "very low traffic: a handful of spans and log lines, 2 canary metric samples",
                                     normal, normal, dict(per_s=0.03), dict(per_s=0.03), dict(per_s=0.02), dict(per_s=0.02),
                                     can_min=1))
    out.append(scenario_before_after(rng, "syn-variance-blowup", "fail", "latency_variance",
                                     "server latency median unchanged, spread x8 (a tail that comes and goes)",
                                     dict(normal, lat_sd=0.004), dict(normal, lat_scale=0.032), can_min=10))
    out.append(scenario_before_after(rng, "syn-slow-memory-leak", "fail", "memory_leak",
                                     "memory grows 6 MiB per minute in the canary, flat in the baseline",
                                     normal, dict(normal, mem_slope_per_min=6.0), can_min=10))
    out.append(scenario_before_after(rng, "syn-healthy-noisy", "pass", None,
                                     "a healthy canary with the same noisy telemetry as its baseline",
                                     normal, normal, sp, sp, lg, lg))
    out.append(scenario_before_after(rng, "syn-error-logs-and-slow-spans", "fail", "exception",
                                     "10 % of canary log lines are a new ERROR, canary spans 3x slower",
                                     normal, normal, sp, dict(sp, slow=3.0), lg, dict(lg, error_share=0.1)))

    # Concurrent baseline: healthy sibling replicas over the same window. Traffic ramps up on
    # both sides, which would fool a before/after comparison but not a sibling comparison.
    for sid, expected, fault, slow in (("syn-concurrent-baseline-pass", "pass", None, 1.0),
                                       ("syn-concurrent-baseline-fail", "fail", "network_delay", 2.5)):
        b = Side()
        c = Side()
        b.window = c.window = (T0, T0 + timedelta(minutes=5))
        b.metrics = metric_rows(rng, T0, 5, cpu=35.0, load=80.0)
        c.metrics = metric_rows(rng, T0, 5, cpu=35.0, load=80.0)
        b.spans = spans(rng, T0, 300, per_s=1.5)
        c.spans = spans(rng, T0, 300, per_s=1.5, slow=slow)
        b.logs = logs(rng, T0, 300)
        c.logs = logs(rng, T0, 300)
        core = (T0, T0 + timedelta(seconds=300))
        out.append(dict(id=sid, expected=expected, fault=fault,
                        note="baseline = healthy sibling replicas over the same window as the canary",
                        baseline=b, canary=c, core_b=core, core_c=core))

    # Added last, so the scenarios above keep their random draws (and their bytes).
    out.append(scenario_before_after(rng, "syn-trend-continues-pass", "pass", None,
                                     "memory climbs 3 MiB per minute through the baseline and on through the canary: "
                                     "a steady trend, not a change (a before/after comparison must not read it as a shift)",
                                     dict(normal, mem_slope_per_min=3.0),
                                     dict(normal, mem=300.0 + 3.0 * 30, mem_slope_per_min=3.0), can_min=10))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20260105)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic"))
    a = ap.parse_args()
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    for sc in build(a.seed):
        write(a.out, sc, a.seed)


if __name__ == "__main__":
    main()
