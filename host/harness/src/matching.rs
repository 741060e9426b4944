//! Comparing what an applet did with what a fixture expects.

use serde_json::Value as Json;

/// Equal as values: numbers by value (`9` and `9.0` are the same score, whichever way a
/// Python or JavaScript applet wrote it), objects by their members.
pub fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Why `actual` does not have what `expected` gives, or nothing when it does. Objects match
/// when every member given is there and matches (others are not checked), header names
/// without regard to case; anything else must be equal.
pub fn subset_mismatch(expected: &Json, actual: &Json, at: &str) -> Option<String> {
    match (expected, actual) {
        (Json::Object(want), Json::Object(have)) => want.iter().find_map(|(key, value)| {
            let found = have.get(key).or_else(|| {
                at.ends_with("headers")
                    .then(|| find_header(have, key))
                    .flatten()
            });
            let path = format!("{at}.{key}");
            match found {
                None => Some(format!("{path} is missing (expected {value})")),
                Some(found) => subset_mismatch(value, found, &path),
            }
        }),
        _ if json_eq(expected, actual) => None,
        _ => Some(format!("{at} is {actual}, expected {expected}")),
    }
}

fn find_header<'a>(have: &'a serde_json::Map<String, Json>, name: &str) -> Option<&'a Json> {
    have.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(9), &json!(9.0)));
        assert!(!json_eq(&json!(9), &json!(9.5)));
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }

    #[test]
    fn subsets_name_what_differs() {
        let actual = json!({"method": "POST", "url": "https://x/y", "headers": {"content-type": "application/json"}});
        assert_eq!(
            subset_mismatch(&json!({"method": "POST"}), &actual, "request"),
            None
        );
        assert_eq!(
            subset_mismatch(
                &json!({"headers": {"Content-Type": "application/json"}}),
                &actual,
                "request"
            ),
            None
        );
        assert_eq!(
            subset_mismatch(&json!({"url": "https://x/z"}), &actual, "request").as_deref(),
            Some("request.url is \"https://x/y\", expected \"https://x/z\"")
        );
        assert_eq!(
            subset_mismatch(&json!({"body": "{}"}), &actual, "request").as_deref(),
            Some("request.body is missing (expected \"{}\")")
        );
    }
}
