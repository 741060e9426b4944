//! The body of `coda interaction edit`: `--set` and `--set-json` as a JSON patch of
//! dotted paths.

use serde_json::{Map, Value as Json};

use crate::client::Failure;

/// Sets `value` at a dotted path in `object`, making the objects on the way.
fn set_path(object: &mut Map<String, Json>, path: &str, value: Json) -> Result<(), Failure> {
    let mut parts = path.split('.').peekable();
    let mut at = object;
    while let Some(part) = parts.next() {
        if part.is_empty() {
            return Err(Failure::usage(format!("`{path}`: a field name is empty")));
        }
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return Ok(());
        }
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Json::Object(Map::new()));
        at = next.as_object_mut().ok_or_else(|| {
            Failure::usage(format!("`{path}`: `{part}` is set to a value already"))
        })?;
    }
    Ok(())
}

/// The body of `coda interaction edit`: every --set as text, every --set-json as JSON.
pub(super) fn edit_body(set: &[String], set_json: &[String]) -> Result<Json, Failure> {
    let mut body = Map::new();
    for (pairs, flag) in [(set, "--set"), (set_json, "--set-json")] {
        for pair in pairs {
            let Some((field, raw)) = pair.split_once('=') else {
                return Err(Failure::usage(format!(
                    "{flag} {pair:?}: expected FIELD=VALUE, e.g. {flag} subject=Refund"
                )));
            };
            let value = if flag == "--set" {
                Json::String(raw.to_owned())
            } else {
                serde_json::from_str(raw)
                    .map_err(|e| Failure::usage(format!("{flag} {field}: not JSON: {e}")))?
            };
            set_path(&mut body, field, value)?;
        }
    }
    if body.is_empty() {
        return Err(Failure::usage(
            "nothing to change: give --set FIELD=TEXT or --set-json FIELD=JSON",
        ));
    }
    Ok(Json::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edit_sets_text_json_and_dotted_fields() {
        let body = edit_body(
            &[
                "subject=Refund =ok".into(),
                "custom_fields.tier=gold".into(),
            ],
            &["custom_fields.score=3".into(), "notes=null".into()],
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"subject": "Refund =ok", "custom_fields": {"tier": "gold", "score": 3}, "notes": null})
        );
        assert!(edit_body(&["subject".into()], &[]).is_err());
        assert!(edit_body(&[], &[]).is_err());
        assert!(edit_body(&["a=1".into(), "a.b=2".into()], &[]).is_err());
    }
}
