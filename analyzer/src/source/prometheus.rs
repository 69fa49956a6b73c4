//! A thin client over Prometheus' `/api/v1/query_range`, and the step from a spec's PromQL
//! templates to the engine's metric samples for one side of an analysis.
//!
//! Three rules matter more than the HTTP plumbing:
//! - **No data is never zero.** A series Prometheus does not return, and a point whose value is
//!   NaN or ±Inf, is *absent*: no sample is produced for it, so the judges see too few points and
//!   call the signal Inconclusive (flagger#1098: a query that returns nothing must not pass a
//!   canary).
//! - **Points sit on a fixed grid.** Start and end are aligned to multiples of the step, so a
//!   window that grows interval by interval is re-queried at the same timestamps and the engine
//!   receives the same points each time (the metric table accepts a repeated identical reading).
//! - **Errors say what Prometheus said.** `status: error` answers keep their `errorType` and
//!   `error` text; a refused connection, a timeout or a non-Prometheus answer (a proxy's HTML
//!   page) each get their own variant naming the URL.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::telemetry::MetricSample;

/// Prometheus refuses a range query of more than 11,000 points per series; longer windows are
/// fetched in chunks of this many steps and stitched together.
const MAX_POINTS_PER_QUERY: u64 = 10_000;

/// How much of a non-Prometheus response body an error quotes.
const BODY_EXCERPT: usize = 300;

/// Why a source could not deliver data. Every variant names what failed (URL, field, metric,
/// placeholder) so that an analysis can record it in its judgement as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The base URL given for the server is not an http(s) URL.
    #[error("prometheus url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// A query argument (time, step, metric list) that cannot be sent.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The argument.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A PromQL template that cannot be rendered: an unknown `${name}`, an unterminated
    /// placeholder, an invalid label name.
    #[error("query template {template:?}: {message}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong, naming the placeholder.
        message: String,
    },
    /// The server could not be reached (connection refused, DNS, reset).
    #[error("prometheus at {url} is unreachable: {message}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport error.
        message: String,
    },
    /// No complete answer within the client's timeout.
    #[error("prometheus at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The timeout in force.
        timeout: Duration,
    },
    /// Prometheus answered `status: error` (bad PromQL, a query timeout, too many points…).
    #[error(
        "prometheus rejected the query (HTTP {http_status}, {error_type}): {error}; query: {query}"
    )]
    Prometheus {
        /// The HTTP status of the answer (400, 422, 503…).
        http_status: u16,
        /// Prometheus' `errorType` (`bad_data`, `execution`, `timeout`, `canceled`…).
        error_type: String,
        /// Prometheus' `error` text.
        error: String,
        /// The PromQL sent.
        query: String,
    },
    /// An answer that is not a Prometheus API response (a proxy's error page, a wrong path) or
    /// not the shape a range query returns.
    #[error("prometheus at {url} gave an unexpected answer (HTTP {http_status}): {message}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// Its HTTP status.
        http_status: u16,
        /// What was wrong, with an excerpt of the body.
        message: String,
    },
    /// One metric of a spec needs one series per side; its query returned several.
    #[error("metric {metric:?}: the query returned {count} series ({labels}); aggregate it to one series per side, e.g. sum(...) or avg(...)")]
    SeveralSeries {
        /// The metric.
        metric: String,
        /// How many series came back.
        count: usize,
        /// Their label sets, for the message.
        labels: String,
    },
    /// A metric's query failed; which metric, and why.
    #[error("metric {metric:?}: {source}")]
    Metric {
        /// The metric.
        metric: String,
        /// The failure.
        source: Box<SourceError>,
    },
}

/// One series of a range query: its labels, and its points in time order with finite values
/// only (NaN and ±Inf points are left out: no reading).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series' labels (`__name__` included when the query keeps it).
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`, ascending, on the query's step grid.
    pub points: Vec<(f64, f64)>,
}

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: reqwest::Url,
    endpoint: reqwest::Url,
    /// The endpoint as errors and logs show it: a password in the URL is replaced.
    shown: String,
    client: reqwest::Client,
    timeout: Duration,
}

/// The API's envelope; `data` is read only on success.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<RangeData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeData {
    result_type: String,
    result: Vec<WireSeries>,
}

#[derive(Deserialize)]
struct WireSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Float samples; a series of native histograms has none and is absent here.
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Installs ring as the process-wide rustls provider unless one is installed already: the
/// HTTP client's TLS needs one, and every TLS user of the process must share it.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err means another thread installed one in between: that one is used, as intended.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The value of a point as Prometheus writes it; `None` for NaN, ±Inf and anything unreadable
/// (no reading — never zero).
fn point_value(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The grid point at or after `t`.
fn grid_up(t: f64, step: f64) -> f64 {
    (t / step).ceil() * step
}

/// The grid point at or before `t`.
fn grid_down(t: f64, step: f64) -> f64 {
    (t / step).floor() * step
}

impl Prometheus {
    /// A client for the server at `base_url` (`http://host:9090`, or with a path prefix such as
    /// `https://host/prometheus`); `timeout` bounds each request. Nothing is sent yet: an
    /// unreachable server shows on the first query, as an error that analysis can record.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let invalid = |reason: &str| SourceError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let mut base = reqwest::Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(
                "expected no query string or fragment (the base URL of the server)",
            ));
        }
        if timeout.is_zero() {
            return Err(SourceError::InvalidArgument {
                field: "timeout".into(),
                message: "expected a positive duration".into(),
            });
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let endpoint = base
            .join("api/v1/query_range")
            .map_err(|e| invalid(&e.to_string()))?;
        let shown = redacted(&endpoint);
        ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| SourceError::Client(e.to_string()))?;
        Ok(Self {
            base,
            endpoint,
            shown,
            client,
            timeout,
        })
    }

    /// The server's base URL, as normalised (with a trailing slash), its password (if the URL
    /// carries one for basic auth) replaced: safe to log.
    pub fn base_url(&self) -> String {
        redacted(&self.base)
    }

    /// Runs `query` over `[start, end]` (Unix seconds, both ends included as Prometheus does),
    /// one point per `step` seconds. `start` is aligned up and `end` down to multiples of
    /// `step`, so the same instant always gets the same point however the window is cut. Absent
    /// and NaN points are absent from the result (never 0). A range with no grid point returns
    /// no series without asking the server; one longer than Prometheus' 11,000-point limit is
    /// fetched in chunks.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, SourceError> {
        check_range(start, end, step)?;
        let first = grid_up(start, step);
        let last = grid_down(end, step);
        if last < first {
            return Ok(Vec::new());
        }
        let mut merged: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        let chunk = step * MAX_POINTS_PER_QUERY as f64;
        let mut from = first;
        while from <= last {
            let to = (from + chunk - step).min(last);
            for s in self.query_chunk(query, from, to, step).await? {
                merged.entry(s.labels).or_default().extend(s.points);
            }
            from = to + step;
        }
        Ok(merged
            .into_iter()
            .map(|(labels, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                points.dedup_by(|a, b| a.0.total_cmp(&b.0).is_eq());
                Series { labels, points }
            })
            .collect())
    }

    async fn query_chunk(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, SourceError> {
        let url = self.shown.as_str();
        let form = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        let response = self
            .client
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let http_status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        let bad = |message: String| SourceError::BadResponse {
            url: url.to_string(),
            http_status,
            message,
        };
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
            bad(format!(
                "not a Prometheus API response ({e}); body starts {:?}",
                excerpt(&body)
            ))
        })?;
        if envelope.status == "error" {
            return Err(SourceError::Prometheus {
                http_status,
                error_type: envelope.error_type.unwrap_or_else(|| "unknown".into()),
                error: envelope.error.unwrap_or_default(),
                query: query.to_string(),
            });
        }
        if envelope.status != "success" || !(200..300).contains(&http_status) {
            return Err(bad(format!(
                "status {:?}; body starts {:?}",
                envelope.status,
                excerpt(&body)
            )));
        }
        for w in &envelope.warnings {
            tracing::warn!(query, warning = %w, "prometheus warning");
        }
        let data = envelope
            .data
            .ok_or_else(|| bad("a success without `data`".into()))?;
        if data.result_type != "matrix" {
            return Err(bad(format!(
                "expected data.resultType \"matrix\" from a range query, got {:?}",
                data.result_type
            )));
        }
        Ok(data
            .result
            .into_iter()
            .map(|s| Series {
                labels: s.metric,
                points: s
                    .values
                    .into_iter()
                    .filter_map(|(t, v)| point_value(&v).map(|v| (t, v)))
                    .collect(),
            })
            .collect())
    }

    fn transport_error(&self, e: reqwest::Error) -> SourceError {
        let url = self.shown.clone();
        if e.is_timeout() {
            return SourceError::Timeout {
                url,
                timeout: self.timeout,
            };
        }
        // Without the URL (it may hold a password; the variant names the redacted one). The
        // innermost cause says what actually happened ("Connection refused").
        let e = e.without_url();
        let mut message = e.to_string();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(&e);
        while let Some(c) = cause {
            message = format!("{message}: {c}");
            cause = c.source();
        }
        SourceError::Unreachable { url, message }
    }
}

/// `url` with its password, if any, replaced by `redacted`.
fn redacted(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        // Only fails for URLs that cannot have credentials, which have no password either.
        let _ = u.set_password(Some("redacted"));
    }
    u.to_string()
}

fn check_range(start: f64, end: f64, step: f64) -> Result<(), SourceError> {
    let arg = |field: &str, message: String| SourceError::InvalidArgument {
        field: field.into(),
        message,
    };
    if !start.is_finite() {
        return Err(arg(
            "start",
            format!("expected finite Unix seconds, got {start}"),
        ));
    }
    if !end.is_finite() {
        return Err(arg(
            "end",
            format!("expected finite Unix seconds, got {end}"),
        ));
    }
    if !(step.is_finite() && step >= 0.001) {
        return Err(arg(
            "step",
            format!("expected a step of at least 0.001 s, got {step}"),
        ));
    }
    if end < start {
        return Err(arg(
            "end",
            format!("expected an end at or after the start {start}, got {end}"),
        ));
    }
    Ok(())
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut cut = text.len().min(BODY_EXCERPT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text[..cut].to_string()
}

/// What a side is: the Prometheus label matchers that select it, and variables its queries may
/// use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// `name = value` label matchers; `${scope}` renders them as `a="x",b="y"`.
    pub matchers: Vec<(String, String)>,
    /// `${name}` renders as the value, verbatim (a duration, a job name, a regex).
    pub vars: BTreeMap<String, String>,
}

/// Renders a PromQL template for one side: `${scope}` becomes the side's label matchers joined as
/// `a="x",b="y"` (values escaped as PromQL strings, names checked), `${name}` a scope variable,
/// verbatim. An unknown placeholder or an unterminated `${` is an error naming it.
pub fn render_query(template: &str, scope: &Scope) -> Result<String, SourceError> {
    let mut matchers = Vec::with_capacity(scope.matchers.len());
    for (name, value) in &scope.matchers {
        if !is_label_name(name) {
            return Err(SourceError::Template {
                template: template.to_string(),
                message: format!(
                    "scope matcher {name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ),
            });
        }
        matchers.push(format!("{name}=\"{}\"", escape_label_value(value)));
    }
    let matchers = matchers.join(",");
    render_with(template, |name| {
        if name == "scope" {
            Some(matchers.clone())
        } else {
            scope.vars.get(name).cloned()
        }
    })
}

/// Renders `${name}` placeholders from `vars` alone, verbatim (no `${scope}` matchers): the
/// Kayenta face uses it for Kayenta's own templates, where `${scope}` is the scope string as
/// Kayenta's FreeMarker inserts it.
pub fn render_vars(template: &str, vars: &BTreeMap<String, String>) -> Result<String, SourceError> {
    render_with(template, |name| vars.get(name).cloned())
}

fn render_with(
    template: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SourceError> {
    let err = |message: String| SourceError::Template {
        template: template.to_string(),
        message,
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else {
            return Err(err(format!(
                "unterminated placeholder starting {:?}",
                &rest[at..]
            )));
        };
        let name = &after[..close];
        if name.is_empty() {
            return Err(err("empty placeholder ${}".into()));
        }
        match lookup(name) {
            Some(value) => out.push_str(&value),
            None => {
                return Err(err(format!(
                    "unknown placeholder ${{{name}}}: the scope has no variable {name:?}"
                )))
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label value as a PromQL double-quoted string's content.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

/// One metric of a spec: the name the engine judges it by (its direction and unit rules read the
/// name) and its PromQL template.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    /// The metric's name in the analysis.
    pub name: String,
    /// The PromQL template, rendered per side by [`render_query`].
    pub query: String,
}

/// A metric sample that owns its name, as a live source produces it; [`Self::as_sample`]
/// borrows it as the engine's [`MetricSample`] for [`crate::analysis::Batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedMetricSample {
    /// Unix seconds (a grid point of the query's step).
    pub time: f64,
    /// The metric's name in the analysis.
    pub name: String,
    /// The reading; NaN for "no reading at this time" (never infinite).
    pub value: f64,
}

impl OwnedMetricSample {
    /// The engine's borrowed form.
    pub fn as_sample(&self) -> MetricSample<'_> {
        MetricSample {
            time: self.time,
            name: &self.name,
            value: self.value,
        }
    }
}

/// Fetches every metric of a spec for one side over the window `[start, end)` (end excluded, as
/// the engine's windows are: a point stamped `end` belongs to the next interval), one point per
/// `step` on the aligned grid, into the engine's metric samples — laid out as a recorded table
/// is: a row for every grid time at which any metric of the side had a reading, and in it a
/// NaN sample ("no reading", never 0) for each metric that had none then. A metric whose query
/// returns no series, or only NaN, is thus a column of NaN as soon as the side has any row (the
/// engine calls it Inconclusive, never Pass). A query returning several series is an error,
/// since a side's metric is one series. Errors name the metric.
pub async fn fetch_side(
    prom: &Prometheus,
    metrics: &[MetricQuery],
    scope: &Scope,
    start: f64,
    end: f64,
    step: f64,
) -> Result<Vec<OwnedMetricSample>, SourceError> {
    check_range(start, end, step)?;
    for (i, m) in metrics.iter().enumerate() {
        if m.name.is_empty() {
            return Err(SourceError::InvalidArgument {
                field: format!("metrics[{i}].name"),
                message: "expected a non-empty name".into(),
            });
        }
        if metrics[..i].iter().any(|o| o.name == m.name) {
            return Err(SourceError::InvalidArgument {
                field: format!("metrics[{i}].name"),
                message: format!("metric names must be unique; {:?} appears twice", m.name),
            });
        }
    }
    // The last grid point strictly before `end`.
    let last = grid_up(end, step) - step;
    if last < grid_up(start, step) {
        return Ok(Vec::new());
    }
    let mut readings: Vec<Vec<(f64, f64)>> = Vec::with_capacity(metrics.len());
    for m in metrics {
        let in_metric = |source: SourceError| SourceError::Metric {
            metric: m.name.clone(),
            source: Box::new(source),
        };
        let query = render_query(&m.query, scope).map_err(in_metric)?;
        let series = prom
            .query_range(&query, start, last, step)
            .await
            .map_err(in_metric)?;
        match series.as_slice() {
            [] => {
                tracing::debug!(metric = %m.name, %query, "no series: no data");
                readings.push(Vec::new());
            }
            [one] => readings.push(
                one.points
                    .iter()
                    .copied()
                    .filter(|(t, _)| *t >= start && *t < end)
                    .collect(),
            ),
            several => {
                return Err(SourceError::SeveralSeries {
                    metric: m.name.clone(),
                    count: several.len(),
                    labels: several
                        .iter()
                        .take(3)
                        .map(|s| format!("{:?}", s.labels))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    let mut times: Vec<f64> = readings.iter().flatten().map(|p| p.0).collect();
    times.sort_by(f64::total_cmp);
    times.dedup_by(|a, b| a.total_cmp(b).is_eq());
    let mut out = Vec::with_capacity(times.len() * metrics.len());
    for (m, points) in metrics.iter().zip(&readings) {
        let mut next = points.iter().peekable();
        for &time in &times {
            let value = match next.peek() {
                Some((t, v)) if t.total_cmp(&time).is_eq() => {
                    let v = *v;
                    next.next();
                    v
                }
                _ => f64::NAN,
            };
            out.push(OwnedMetricSample {
                time,
                name: m.name.clone(),
                value,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            matchers: vec![
                ("app".into(), "check\"out\\".into()),
                ("version".into(), "v2\nx".into()),
            ],
            vars: BTreeMap::from([("window".into(), "5m".into())]),
        }
    }

    #[test]
    fn scope_matchers_are_escaped_and_vars_verbatim() {
        let q = render_query(
            "sum(rate(http_requests_total{${scope},code=~\"5..\"}[${window}]))",
            &scope(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(http_requests_total{app="check\"out\\",version="v2\nx",code=~"5.."}[5m]))"#
        );
    }

    #[test]
    fn unknown_and_unterminated_placeholders_are_named() {
        let e = render_query("up{${scope}}[${lookback}]", &scope()).unwrap_err();
        assert!(e.to_string().contains("${lookback}"), "{e}");
        let e = render_query("up{${scope", &scope()).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
        let e = render_query("up{${}}", &scope()).unwrap_err();
        assert!(e.to_string().contains("empty placeholder"), "{e}");
        let bad = Scope {
            matchers: vec![("service.name".into(), "x".into())],
            vars: BTreeMap::new(),
        };
        let e = render_query("up{${scope}}", &bad).unwrap_err();
        assert!(e.to_string().contains("service.name"), "{e}");
        // No placeholder at all, and a lone `$`, pass through.
        assert_eq!(render_query("up$", &scope()).unwrap(), "up$");
    }

    #[test]
    fn kayenta_templates_see_the_scope_string() {
        let vars = BTreeMap::from([("scope".to_string(), "myapp-canary".to_string())]);
        assert_eq!(
            render_vars("avg(cpu{app=\"${scope}\"})", &vars).unwrap(),
            "avg(cpu{app=\"myapp-canary\"})"
        );
        assert!(render_vars("${location}", &vars).is_err());
    }

    #[test]
    fn non_finite_points_are_no_reading() {
        for text in ["NaN", "+Inf", "-Inf", "Inf", "nonsense", ""] {
            assert_eq!(point_value(text), None, "{text}");
        }
        assert_eq!(point_value("0"), Some(0.0));
        assert_eq!(point_value("-1.5e3"), Some(-1500.0));
    }

    #[test]
    fn the_grid_is_fixed_whatever_the_window() {
        assert_eq!(grid_up(1000.0, 60.0), 1020.0);
        assert_eq!(grid_up(1020.0, 60.0), 1020.0);
        assert_eq!(grid_down(1079.0, 60.0), 1020.0);
        assert!(check_range(10.0, 5.0, 1.0).is_err());
        assert!(check_range(0.0, 5.0, 0.0).is_err());
        assert!(check_range(f64::NAN, 5.0, 1.0).is_err());
    }

    #[test]
    fn urls_are_checked_and_normalised() {
        let p = Prometheus::new("http://127.0.0.1:9090/prom", Duration::from_secs(1)).unwrap();
        assert_eq!(p.base_url(), "http://127.0.0.1:9090/prom/");
        assert_eq!(
            p.endpoint.as_str(),
            "http://127.0.0.1:9090/prom/api/v1/query_range"
        );
        let secret =
            Prometheus::new("https://vigil:s3cret@prom.example/", Duration::from_secs(1)).unwrap();
        assert_eq!(secret.base_url(), "https://vigil:redacted@prom.example/");
        assert!(!secret.shown.contains("s3cret"));
        for bad in ["localhost:9090", "ftp://x", "http://x/?q=1", "not a url"] {
            assert!(
                matches!(
                    Prometheus::new(bad, Duration::from_secs(1)),
                    Err(SourceError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
