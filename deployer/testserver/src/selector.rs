//! Label selectors in the API's query syntax: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//! `a notin (x,y)`, comma-separated and ANDed.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if let Some((k, set)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(set)?)
            } else if let Some((k, set)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(set)?)
            } else if part.contains(' ') || part.contains('(') {
                return Err(format!("unable to parse requirement: {part:?}"));
            } else {
                Requirement::Exists(part.into())
            };
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn from_map(m: &BTreeMap<String, String>) -> Self {
        LabelSelector {
            requirements: m
                .iter()
                .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn matches(&self, labels: BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
        })
    }
}

fn parse_set(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, got {s:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// `metadata.name=x` / `metadata.namespace=x` field selectors, the only fields the API supports
/// for every resource.
pub fn field_selector_matches(selector: &str, name: &str, namespace: &str) -> Result<bool, String> {
    for part in selector.split(',').filter(|p| !p.is_empty()) {
        let (field, value, negate) = if let Some((f, v)) = part.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, v, false)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, v, false)
        } else {
            return Err(format!("invalid field selector {part:?}"));
        };
        let actual = match field.trim() {
            "metadata.name" => name,
            "metadata.namespace" => namespace,
            other => return Err(format!("field label not supported: {other}")),
        };
        if (actual == value.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_based_and_equality_requirements_combine() {
        let s =
            LabelSelector::parse("app=shop,track in (canary, baseline),!paused,tier!=db").unwrap();
        assert!(s.matches(labels(&[("app", "shop"), ("track", "canary")])));
        assert!(!s.matches(labels(&[("app", "shop"), ("track", "main")])));
        assert!(!s.matches(labels(&[
            ("app", "shop"),
            ("track", "canary"),
            ("paused", "1")
        ])));
        assert!(!s.matches(labels(&[
            ("app", "shop"),
            ("track", "canary"),
            ("tier", "db")
        ])));
        assert!(LabelSelector::parse("a in x").is_err());
    }

    #[test]
    fn field_selectors_on_name() {
        assert!(field_selector_matches("metadata.name=a", "a", "ns").unwrap());
        assert!(!field_selector_matches("metadata.name=a", "b", "ns").unwrap());
        assert!(field_selector_matches("spec.x=1", "a", "ns").is_err());
    }
}
