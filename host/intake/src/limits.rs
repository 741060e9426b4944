//! The bounds on what a platform may send, each checked before the payload is parsed, so
//! no delivery can make the host hold or walk more than these.

use serde_json::Value as Json;

use crate::IntakeError;

/// The largest delivery, in bytes. Platform events are a few KiB (Amazon Connect's largest
/// documented sample is under 8 KiB); this leaves room for generous attributes.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The deepest nesting of objects and arrays in a JSON payload (or in a JSON form field
/// such as Twilio's `TaskAttributes`).
pub const MAX_DEPTH: usize = 32;

/// The most fields of a form-encoded delivery (Twilio sends about thirty).
pub const MAX_FORM_FIELDS: usize = 200;

pub(crate) fn check_size(body: &[u8]) -> Result<(), IntakeError> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(IntakeError::TooLarge {
            size: body.len(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// How deeply `text` nests objects and arrays, counted without parsing it: past
/// [`MAX_DEPTH`] it is refused before serde sees it.
fn check_depth(text: &[u8], what: &str) -> Result<(), IntakeError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(IntakeError::TooDeep {
                        what: what.into(),
                        limit: MAX_DEPTH,
                    });
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `text` read as JSON after its size and depth are checked; `what` names it in an error.
pub(crate) fn json(text: &[u8], what: &str) -> Result<Json, IntakeError> {
    check_size(text)?;
    check_depth(text, what)?;
    serde_json::from_slice(text).map_err(|e| IntakeError::Malformed {
        what: what.into(),
        format: "JSON",
        why: e.to_string(),
    })
}

/// A form-encoded body's fields in order, at most [`MAX_FORM_FIELDS`] of them.
pub(crate) fn form(body: &[u8]) -> Result<Vec<(String, String)>, IntakeError> {
    check_size(body)?;
    let mut fields = Vec::new();
    for (name, value) in form_urlencoded::parse(body) {
        if fields.len() == MAX_FORM_FIELDS {
            return Err(IntakeError::TooManyFields {
                what: "the form".into(),
                limit: MAX_FORM_FIELDS,
            });
        }
        fields.push((name.into_owned(), value.into_owned()));
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_refused_before_parsing_and_strings_do_not_count() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(
            json(deep.as_bytes(), "the payload"),
            Err(IntakeError::TooDeep { .. })
        ));
        let shallow = format!("{{\"a\": \"{}\"}}", "[{".repeat(100));
        assert!(json(shallow.as_bytes(), "the payload").is_ok());
        let escaped = r#"{"a": "\"[[[[", "b": [1]}"#;
        assert!(json(escaped.as_bytes(), "the payload").is_ok());
    }

    #[test]
    fn size_and_fields_are_bounded() {
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            json(&big, "the payload"),
            Err(IntakeError::TooLarge { .. })
        ));
        let many = (0..=MAX_FORM_FIELDS)
            .map(|i| format!("f{i}=x"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(matches!(
            form(many.as_bytes()),
            Err(IntakeError::TooManyFields { .. })
        ));
    }
}
