//! Reading a metric's `analysisConfigurations.canary.*` keys into [`MetricSettings`], with
//! Kayenta's defaults.
//!
//! Kayenta reads these keys with `MapUtils.get` and silently maps anything it does not recognise
//! to a default (an unknown `direction` becomes `either`). Vigil reads the same keys with the
//! same defaults for absent keys, but rejects values it does not recognise: a typo in a canary
//! config should fail loudly, not judge in the wrong direction.

use serde_json::Value;

use super::preprocess::{NanStrategy, OutlierStrategy};
use super::{Direction, EffectSizeMeasure, EffectSizeSettings, MetricSettings};

/// A config value that is present but not what Kayenta accepts there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: expected {expected}, got {got}")]
pub struct ConfigError {
    /// The key, relative to the metric's `analysisConfigurations`.
    pub path: String,
    pub expected: &'static str,
    pub got: String,
}

/// Kayenta's `MapUtils.get`: follow `path` through nested objects. An array is searched
/// element-wise and the matches flattened into one array; a path through anything else, or a
/// path that matches nothing, is `None`. The empty path returns the value itself.
pub fn map_get(value: &Value, path: &[&str]) -> Option<Value> {
    let Some((key, rest)) = path.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Object(map) => map.get(*key).and_then(|v| map_get(v, rest)),
        Value::Array(items) => {
            let mut found = Vec::new();
            for item in items {
                match map_get(item, path) {
                    Some(Value::Array(inner)) => found.extend(inner),
                    Some(v) => found.push(v),
                    None => {}
                }
            }
            if found.is_empty() {
                None
            } else {
                Some(Value::Array(found))
            }
        }
        _ => None,
    }
}

/// `MapUtils.getAsDoubleWithDefault`: integers are accepted where a double is expected.
pub fn get_f64(value: &Value, path: &[&str], default: f64) -> Result<f64, ConfigError> {
    match map_get(value, path) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| bad(path, "a number", &Value::Number(n))),
        Some(other) => Err(bad(path, "a number", &other)),
    }
}

fn get_bool(value: &Value, path: &[&str]) -> Result<bool, ConfigError> {
    match map_get(value, path) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        // Kayenta throws a ClassCastException for "true" (a string) and fails the whole judge.
        Some(other) => Err(bad(path, "true or false", &other)),
    }
}

fn get_choice<T: Copy>(
    value: &Value,
    path: &[&str],
    expected: &'static str,
    choices: &[(&str, T)],
    default: T,
) -> Result<T, ConfigError> {
    match map_get(value, path) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| bad(path, expected, &Value::String(s))),
        Some(other) => Err(bad(path, expected, &other)),
    }
}

fn bad(path: &[&str], expected: &'static str, got: &Value) -> ConfigError {
    let mut text = got.to_string();
    if text.len() > 80 {
        text.truncate(77);
        text.push_str("...");
    }
    ConfigError {
        path: path.join("."),
        expected,
        got: text,
    }
}

/// The settings NetflixACAJudge reads for one metric, from its `analysisConfigurations`.
pub fn metric_settings(analysis_configurations: &Value) -> Result<MetricSettings, ConfigError> {
    let v = analysis_configurations;
    let direction = get_choice(
        v,
        &["canary", "direction"],
        "one of \"increase\", \"decrease\", \"either\"",
        &[
            ("increase", Direction::Increase),
            ("decrease", Direction::Decrease),
            ("either", Direction::Either),
        ],
        Direction::Either,
    )?;
    let nan_strategy = get_choice(
        v,
        &["canary", "nanStrategy"],
        "one of \"remove\", \"replace\"",
        &[
            ("remove", NanStrategy::Remove),
            ("replace", NanStrategy::Replace),
        ],
        NanStrategy::Remove,
    )?;
    let remove_outliers = get_choice(
        v,
        &["canary", "outliers", "strategy"],
        "one of \"remove\", \"keep\"",
        &[("remove", true), ("keep", false)],
        false,
    )?;
    let factor = get_f64(v, &["canary", "outliers", "outlierFactor"], 3.0)?;
    let measure = get_choice(
        v,
        &["canary", "effectSize", "measure"],
        "one of \"meanRatio\", \"cles\"",
        &[
            ("meanRatio", EffectSizeMeasure::MeanRatio),
            ("cles", EffectSizeMeasure::Cles),
        ],
        EffectSizeMeasure::MeanRatio,
    )?;
    let default_effect = EffectSizeSettings::defaults(measure);
    let effect = |key: &str, default: f64| get_f64(v, &["canary", "effectSize", key], default);
    Ok(MetricSettings {
        direction,
        nan_strategy,
        outliers: if remove_outliers {
            OutlierStrategy::Remove { factor }
        } else {
            OutlierStrategy::Keep
        },
        critical: get_bool(v, &["canary", "critical"])?,
        must_have_data: get_bool(v, &["canary", "mustHaveData"])?,
        muted: get_bool(v, &["canary", "muted"])?,
        effect_size: EffectSizeSettings {
            measure,
            allowed_increase: effect("allowedIncrease", default_effect.allowed_increase)?,
            allowed_decrease: effect("allowedDecrease", default_effect.allowed_decrease)?,
            critical_increase: effect("criticalIncrease", default_effect.critical_increase)?,
            critical_decrease: effect("criticalDecrease", default_effect.critical_decrease)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_keys_take_kayentas_defaults() {
        let s = metric_settings(&json!({})).unwrap();
        assert_eq!(s, MetricSettings::default());
        let s = metric_settings(&json!({"canary": {"effectSize": {"measure": "cles"}}})).unwrap();
        assert_eq!(s.effect_size.allowed_increase, 0.5);
        assert_eq!(s.effect_size.critical_decrease, 0.5);
    }

    #[test]
    fn critical_default_is_not_allowed() {
        // Kayenta defaults critical* to 1.0 (or 0.5), not to the allowed* values.
        let s =
            metric_settings(&json!({"canary": {"effectSize": {"allowedIncrease": 2}}})).unwrap();
        assert_eq!(s.effect_size.allowed_increase, 2.0);
        assert_eq!(s.effect_size.critical_increase, 1.0);
    }

    #[test]
    fn unknown_values_are_errors_naming_the_key() {
        let e = metric_settings(&json!({"canary": {"direction": "up"}})).unwrap_err();
        assert_eq!(e.path, "canary.direction");
        assert!(e.to_string().contains("\"increase\""), "{e}");
        let e = metric_settings(&json!({"canary": {"critical": "true"}})).unwrap_err();
        assert_eq!(e.path, "canary.critical");
        let e =
            metric_settings(&json!({"canary": {"outliers": {"outlierFactor": "3"}}})).unwrap_err();
        assert_eq!(e.path, "canary.outliers.outlierFactor");
    }
}
