#!/usr/bin/env python3
"""Writes examples/kayenta-request.json: a synthetic Kayenta RemoteJudge request.

Six metrics in three groups (latency, errors, cpu), 60 one-minute points per side, generated
from fixed seeds so the file is reproducible: `python3 examples/gen_kayenta_request.py`.
The canary carries one clear regression: its request latency is ~12% higher at p50 and ~35%
higher at p99 (as from a slower dependency call). Everything else is drawn from the same
distribution for baseline and canary. A few points are missing (null / "NaN"), as when a scrape
fails; Kayenta's mixer pads those with NaN.
"""
import json
import math
import random
from pathlib import Path

N = 60
START = "2026-11-26T09:00:00Z"
END = "2026-11-26T10:00:00Z"


def series(rng, f):
    return [round(f(rng, i), 6) for i in range(N)]


def lognormal(median, sigma):
    return lambda rng, i: median * math.exp(rng.gauss(0.0, sigma))


def counts(rate):
    # Poisson by inversion; mostly zeros for small rates.
    def draw(rng, i):
        k, p, u = 0, math.exp(-rate), rng.random()
        s = p
        while u > s:
            k += 1
            p *= rate / k
            s += p
        return float(k)
    return draw


def with_gaps(values, rng, n_gaps, marker):
    for i in rng.sample(range(N), n_gaps):
        values[i] = marker
    return values


METRICS = [
    # name, group, analysisConfigurations.canary, baseline generator, canary generator
    ("request_latency_p50_ms", "latency",
     {"direction": "increase", "nanStrategy": "remove"},
     lognormal(42.0, 0.06), lognormal(47.0, 0.06)),
    ("request_latency_p99_ms", "latency",
     {"direction": "increase", "nanStrategy": "remove",
      "effectSize": {"allowedIncrease": 1.1, "criticalIncrease": 1.5}},
     lognormal(180.0, 0.10), lognormal(243.0, 0.10)),
    ("http_5xx_per_min", "errors",
     {"direction": "increase", "nanStrategy": "replace"},
     counts(0.4), counts(0.4)),
    ("error_log_lines_per_min", "errors",
     {"direction": "increase", "nanStrategy": "replace",
      "effectSize": {"measure": "cles", "allowedIncrease": 0.7}},
     counts(2.0), counts(2.0)),
    ("cpu_utilization_pct", "cpu",
     {"direction": "increase"},
     lambda rng, i: 38.0 + 4.0 * math.sin(i / 9.0) + rng.gauss(0.0, 1.5),
     lambda rng, i: 38.0 + 4.0 * math.sin(i / 9.0) + rng.gauss(0.0, 1.5)),
    ("gc_pause_ms_per_min", "cpu",
     {"direction": "either", "outliers": {"strategy": "remove", "outlierFactor": 3.0}},
     lognormal(12.0, 0.25), lognormal(12.0, 0.25)),
]


def main():
    rng = random.Random(20261126)
    metrics, pairs = [], []
    for i, (name, group, canary_cfg, base_gen, canary_gen) in enumerate(METRICS):
        metrics.append({
            "name": name,
            "query": {"type": "prometheus", "metricName": name,
                      "customInlineTemplate": f"PromQL:{name}{{app=\"checkout\",${{scope}}}}"},
            "groups": [group],
            "analysisConfigurations": {"canary": canary_cfg},
            "scopeName": "default",
        })
        control = series(rng, base_gen)
        experiment = series(rng, canary_gen)
        if i == 0:
            with_gaps(control, rng, 2, None)
        if i == 4:
            with_gaps(experiment, rng, 1, "NaN")
        pairs.append({
            "name": name,
            "id": f"pair-{i + 1}",
            "tags": {"app": "checkout", "region": "us-east-1"},
            "values": {"control": control, "experiment": experiment},
            "scopes": {
                "control": {"scope": "checkout-baseline", "location": "us-east-1",
                            "start": START, "end": END, "step": 60},
                "experiment": {"scope": "checkout-canary", "location": "us-east-1",
                               "start": START, "end": END, "step": 60},
            },
            "attributes": {"control": {"query": f"{name}{{version=\"baseline\"}}"},
                           "experiment": {"query": f"{name}{{version=\"canary\"}}"}},
        })
    request = {
        "canaryConfig": {
            "name": "checkout-service",
            "description": "Checkout service canary: latency, errors and CPU (synthetic example)",
            "configVersion": "1.0",
            "applications": ["checkout"],
            "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
            "metrics": metrics,
            "templates": {},
            "classifier": {"groupWeights": {"latency": 40, "errors": 40, "cpu": 20}},
        },
        "scoreThresholds": {"pass": 95, "marginal": 75},
        "metricSetPairList": pairs,
    }
    out = Path(__file__).with_name("kayenta-request.json")
    out.write_text(json.dumps(request, indent=2) + "\n")


if __name__ == "__main__":
    main()
