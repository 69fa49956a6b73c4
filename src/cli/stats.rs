//! `vigil stats ...`: the statistical tests behind the judges, one JSON request on stdin, one JSON
//! result on stdout, with scipy's names and conventions so results can be checked against scipy.
//!
//! `vigil stats mann-whitney` reads
//! `{"x": [...], "y": [...], "alternative": "two-sided"|"less"|"greater",
//!   "method": "auto"|"exact"|"asymptotic", "use_continuity": true}`
//! (the last three optional, scipy's defaults) and prints `{"statistic": U, "pvalue": p}`, where U
//! is the statistic of `x` as in `scipy.stats.mannwhitneyu`. The one p-value scipy reports as NaN
//! (every value tied, no continuity correction) is printed as `null`, JSON having no NaN.

use std::io::Read;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use vigil_models::rank::{mann_whitney_u, Alternative, MannWhitneyOptions, Method};

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Mann-Whitney U test as scipy.stats.mannwhitneyu: JSON {"x", "y", "alternative", "method",
    /// "use_continuity"} on stdin, {"statistic", "pvalue"} on stdout.
    MannWhitney,
}

pub fn run(command: &StatsCommand) -> Result<()> {
    match command {
        StatsCommand::MannWhitney => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the request from stdin")?;
            println!("{}", mann_whitney(&text)?);
            Ok(())
        }
    }
}

const REQUEST_SHAPE: &str =
    "a JSON object with fields `x`, `y` and optionally `alternative`, `method`, `use_continuity`";

/// The whole command minus the I/O: request text in, result line out.
pub fn mann_whitney(request: &str) -> Result<String> {
    let value: Value = serde_json::from_str(request).context("the request is not valid JSON")?;
    // Checked here because serde would also accept an array as a struct, field by position.
    if !value.is_object() {
        bail!(
            "the request is {}: expected {REQUEST_SHAPE}",
            describe(&value)
        );
    }
    let raw = RawRequest::deserialize(value).context("invalid mann-whitney request")?;
    let x = sample("x", &raw.x)?;
    let y = sample("y", &raw.y)?;
    let defaults = MannWhitneyOptions::default();
    let opts = MannWhitneyOptions {
        alternative: match &raw.alternative {
            None => defaults.alternative,
            Some(v) => match v.as_str() {
                Some("two-sided") => Alternative::TwoSided,
                Some("less") => Alternative::Less,
                Some("greater") => Alternative::Greater,
                _ => bail!(
                    "`alternative` is {}: expected one of \"two-sided\", \"less\", \"greater\"",
                    describe(v)
                ),
            },
        },
        method: match &raw.method {
            None => defaults.method,
            Some(v) => match v.as_str() {
                Some("auto") => Method::Auto,
                Some("exact") => Method::Exact,
                Some("asymptotic") => Method::Asymptotic,
                _ => bail!(
                    "`method` is {}: expected one of \"auto\", \"exact\", \"asymptotic\"",
                    describe(v)
                ),
            },
        },
        use_continuity: match &raw.use_continuity {
            None => defaults.use_continuity,
            Some(Value::Bool(b)) => *b,
            Some(v) => bail!(
                "`use_continuity` is {}: expected true or false",
                describe(v)
            ),
        },
    };
    let result = mann_whitney_u(&x, &y, &opts)?;
    Ok(serde_json::to_string(&result)?)
}

/// The request as JSON values, so that each field can be checked with a message that names it
/// (serde's own type errors do not say which field they are about). Unknown fields are rejected
/// by serde, which does name them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    x: Value,
    y: Value,
    #[serde(default, deserialize_with = "present")]
    alternative: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    method: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    use_continuity: Option<Value>,
}

/// `Some` whenever the field is present, even as `null`: an explicit null is an error, not a
/// request for the default.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn sample(field: &str, value: &Value) -> Result<Vec<f64>> {
    let Value::Array(items) = value else {
        bail!(
            "`{field}` is {}: expected a non-empty array of numbers",
            describe(value)
        );
    };
    if items.is_empty() {
        bail!("`{field}` is empty: expected a non-empty array of numbers");
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_f64() {
            Some(v) => Ok(v),
            None => bail!(
                "`{field}[{i}]` is {}: expected a number (NaN, null and strings are not allowed)",
                describe(item)
            ),
        })
        .collect()
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
