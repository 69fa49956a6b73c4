//! The request parser must turn any JSON value into a request or an error, never a panic.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use vigil_analyzer::kayenta_api::{judge, parse_request, parse_request_value, RequestError};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| json!(v)),
        prop_oneof![
            Just("NaN".to_string()),
            Just("increase".to_string()),
            Just("remove".to_string()),
            "[a-zA-Z]{0,8}",
        ]
        .prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("canaryConfig".to_string()),
        Just("scoreThresholds".to_string()),
        Just("metricSetPairList".to_string()),
        Just("metrics".to_string()),
        Just("name".to_string()),
        Just("values".to_string()),
        Just("control".to_string()),
        Just("experiment".to_string()),
        Just("pass".to_string()),
        Just("marginal".to_string()),
        Just("analysisConfigurations".to_string()),
        Just("canary".to_string()),
        Just("direction".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid request whose parts the second property replaces with arbitrary values.
fn valid() -> Value {
    json!({
        "canaryConfig": {"metrics": [{"name": "m", "groups": ["g"], "analysisConfigurations": {}}]},
        "scoreThresholds": {"pass": 75, "marginal": 50},
        "metricSetPairList": [{"name": "m", "values": {"control": [1, 2], "experiment": [3, 4]}}]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_values_never_panic(v in arb_json()) {
        let parsed = parse_request_value(v.clone());
        if let Err(e) = &parsed {
            prop_assert!(!e.to_string().is_empty());
        }
        // The text path agrees with the value path.
        prop_assert_eq!(parse_request(&v.to_string()).is_ok(), parsed.is_ok());
    }

    #[test]
    fn one_corrupted_field_is_an_error_or_a_valid_request(
        which in 0usize..8,
        replacement in arb_json(),
    ) {
        let mut v = valid();
        let slot: &mut Value = match which {
            0 => &mut v["canaryConfig"],
            1 => &mut v["scoreThresholds"],
            2 => &mut v["metricSetPairList"],
            3 => &mut v["canaryConfig"]["metrics"][0]["analysisConfigurations"],
            4 => &mut v["metricSetPairList"][0]["values"]["control"],
            5 => &mut v["scoreThresholds"]["marginal"],
            6 => &mut v["metricSetPairList"][0]["name"],
            _ => &mut v["canaryConfig"]["metrics"][0]["groups"],
        };
        *slot = replacement;
        match parse_request_value(v) {
            Ok(r) => {
                prop_assert!(!r.metrics.is_empty());
                prop_assert!(r.thresholds.marginal <= r.thresholds.pass);
                // Whatever was accepted can be judged without panicking.
                let result = judge(&r, 0);
                prop_assert_eq!(result.results.len(), r.metrics.len());
            }
            Err(RequestError::Field { path, message }) => {
                prop_assert!(!path.is_empty() && !message.is_empty());
            }
            Err(RequestError::NotJson(_)) => prop_assert!(false, "a value is always JSON"),
        }
    }
}

#[test]
fn the_valid_request_parses() {
    let r = parse_request_value(valid()).unwrap();
    assert_eq!(r.metrics[0].control, vec![1.0, 2.0]);
    assert_eq!(r.metrics[0].groups, vec!["g".to_string()]);
}
