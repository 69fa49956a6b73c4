//! Where the runner gets metric samples: a [`MetricSource`]. The service's one source is
//! Prometheus (Seam 2, `crate::source::prometheus`, built on branch `prom`); tests give the runner
//! their own source. [`prometheus_fetch`] is the only place that knows Seam 2.

use std::future::Future;
use std::pin::Pin;

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

/// The seam to `crate::source::prometheus` (branch `prom`). Until that branch is merged the
/// source is absent and every interval records this error, as it would for a Prometheus that
/// cannot be reached. At merge this body becomes:
///
/// ```text
/// let p = spec.prometheus.as_ref().ok_or("no prometheus in the spec")?;
/// let prom = crate::source::prometheus::Prometheus::new(&p.url, Duration::from_secs_f64(p.timeout.secs()))
///     .map_err(|e| e.to_string())?;
/// let s = match side { Side::Baseline => &spec.baseline, Side::Canary => &spec.canary };
/// let scope = crate::source::prometheus::Scope { matchers: s.labels.clone().into_iter().collect(), vars: s.vars.clone() };
/// let queries: Vec<_> = spec.metrics.iter().map(|m| crate::source::prometheus::MetricQuery { name: m.name.clone(), query: m.query.clone() }).collect();
/// let got = crate::source::prometheus::fetch_side(&prom, &queries, &scope, start, end, step).await.map_err(|e| e.to_string())?;
/// Ok(got.into_iter().map(|s| Sample { time: s.time, name: s.name, value: s.value }).collect())
/// ```
async fn prometheus_fetch(
    spec: &Spec,
    _side: Side,
    _start: f64,
    _end: f64,
    _step: f64,
) -> Result<Vec<Sample>, String> {
    if spec.metrics.is_empty() {
        return Ok(Vec::new());
    }
    let url = spec.prometheus.as_ref().map_or("", |p| p.url.as_str());
    Err(format!(
        "Prometheus at {} cannot be queried: the Prometheus source is not built into this binary yet",
        redact_url(url)
    ))
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
