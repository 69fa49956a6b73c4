//! Where the runner gets metric samples: a [`MetricSource`]. The service's one source is
//! Prometheus (`crate::source::prometheus`); tests give the runner
//! their own source. [`prometheus_fetch`] is the only place that knows Seam 2.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::spec::Spec;

/// One sample of one metric on one side.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub time: f64,
    /// The spec's metric name.
    pub name: String,
    /// The value; NaN for no reading.
    pub value: f64,
}

/// Which side to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The baseline.
    Baseline,
    /// The canary.
    Canary,
}

/// A boxed fetch.
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<Vec<Sample>, String>> + Send + 'a>>;

/// Fetches every metric of a spec for one side over `[start, end]` at `step` seconds. An error is
/// a sentence for the judgement's note (never a secret: no token, no password in it).
pub trait MetricSource: Send + Sync {
    /// The samples, or why there are none.
    fn fetch<'a>(
        &'a self,
        spec: &'a Spec,
        side: Side,
        start: f64,
        end: f64,
        step: f64,
    ) -> Fetch<'a>;
}

/// The production source: each spec's own Prometheus.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrometheusSource;

impl MetricSource for PrometheusSource {
    fn fetch<'a>(
        &'a self,
        spec: &'a Spec,
        side: Side,
        start: f64,
        end: f64,
        step: f64,
    ) -> Fetch<'a> {
        Box::pin(prometheus_fetch(spec, side, start, end, step))
    }
}

/// Reads one side's metrics from the spec's Prometheus over `[start, end)` on the step grid.
async fn prometheus_fetch(
    spec: &Spec,
    side: Side,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Vec<Sample>, String> {
    use crate::source::prometheus::{fetch_side, MetricQuery, Prometheus, Scope};
    if spec.metrics.is_empty() {
        return Ok(Vec::new());
    }
    let p = spec
        .prometheus
        .as_ref()
        .ok_or("the spec has metrics but no `prometheus` to read them from")?;
    let prom = Prometheus::new(&p.url, Duration::from_secs_f64(p.timeout.secs()))
        .map_err(|e| e.to_string())?;
    let s = match side {
        Side::Baseline => &spec.baseline,
        Side::Canary => &spec.canary,
    };
    let scope = Scope {
        matchers: s.labels.clone().into_iter().collect(),
        vars: s.vars.clone(),
    };
    let queries: Vec<MetricQuery> = spec
        .metrics
        .iter()
        .map(|m| MetricQuery {
            name: m.name.clone(),
            query: m.query.clone(),
        })
        .collect();
    let got = fetch_side(&prom, &queries, &scope, start, end, step)
        .await
        .map_err(|e| e.to_string())?;
    Ok(got
        .into_iter()
        .map(|s| Sample {
            time: s.time,
            name: s.name,
            value: s.value,
        })
        .collect())
}

/// `url` without a `user:password@` part, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_message() {
        assert_eq!(
            redact_url("https://u:secret@prom:9090/x"),
            "https://…@prom:9090/x"
        );
        assert_eq!(redact_url("http://prom:9090"), "http://prom:9090");
    }
}
