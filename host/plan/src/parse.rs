//! From text to a [`Plan`]: YAML or JSON, with the size and nesting of the input bounded.
//!
//! Parsing only checks the shape (fields, types, repeated keys, applet references); what the
//! names mean is [`crate::validate`]'s business. A shape error ends parsing, so it is always
//! exactly one [`Problem`], located by the path of the field and by line and column.

use std::path::Path;

use crate::MAX_PLAN_BYTES;
use crate::plan::Plan;
use crate::problem::Problem;

/// The syntax a plan is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// JSON if the text's first character (after a byte-order mark and white space) is `{`,
    /// YAML otherwise. JSON is nearly a subset of YAML, but the JSON parser gives the better
    /// error messages for JSON text.
    pub fn detect(text: &str) -> Format {
        if strip_bom(text).trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        }
    }

    /// The format a file's extension names (`.json`, `.yaml`, `.yml`, in any case), if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Parses a plan written in YAML or JSON, telling them apart by [`Format::detect`].
///
/// Never panics. Input over [`MAX_PLAN_BYTES`] is refused before parsing, nesting deeper
/// than [`crate::MAX_NESTING`] levels is refused (by serde_json itself, and for YAML by a scan
/// before parsing), and YAML whose aliases would expand it past a small multiple of its
/// size is refused before anything is built ([`coda_types::yaml`]), so no input can exhaust
/// the stack or the memory, or keep the parser busy for long.
pub fn parse(text: &str) -> Result<Plan, Vec<Problem>> {
    parse_as(text, Format::detect(text))
}

/// Parses a plan in the given format, for a caller who knows it (from a file extension, say).
pub fn parse_as(text: &str, format: Format) -> Result<Plan, Vec<Problem>> {
    if text.len() > MAX_PLAN_BYTES {
        return Err(vec![Problem::plan(
            "",
            format!(
                "the plan is {} bytes, more than the limit of {MAX_PLAN_BYTES}",
                text.len()
            ),
        )]);
    }
    let text = strip_bom(text);
    if text.trim().is_empty() {
        return Err(vec![Problem::plan("", "the plan is empty")]);
    }
    let (path, message, location) = match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, Plan>(&mut de) {
                // `end` refuses anything after the plan's closing brace.
                Ok(plan) => match de.end() {
                    Ok(()) => return Ok(plan),
                    Err(e) => (String::new(), e.to_string(), json_location(&e)),
                },
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    let location = json_location(&inner);
                    (path, inner.to_string(), location)
                }
            }
        }
        Format::Yaml => {
            let de = coda_types::yaml::deserializer(text)
                .map_err(|refused| vec![Problem::plan("", format!("the plan {refused}"))])?;
            match serde_path_to_error::deserialize::<_, Plan>(de) {
                Ok(plan) => return Ok(plan),
                Err(e) => {
                    let path = e.path().to_string();
                    let inner = e.into_inner();
                    let location = inner.location().map(|l| (l.line(), l.column()));
                    (path, inner.to_string(), location)
                }
            }
        }
    };
    Err(vec![syntax_problem(path, message, location)])
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

fn json_location(e: &serde_json::Error) -> Option<(usize, usize)> {
    // serde_json reports line 0 when it has no position.
    (e.line() != 0).then(|| (e.line(), e.column()))
}

/// Builds the one problem of a parse error from the path serde_path_to_error tracked, the
/// parser's message and its location, written the same way for both formats:
/// `nodes.greet.exitz: unknown field ... at line 5 column 5`.
fn syntax_problem(path: String, message: String, location: Option<(usize, usize)>) -> Problem {
    // serde_path_to_error writes the root as ".".
    let mut field = if path == "." { String::new() } else { path };
    let mut message = message.as_str();
    // Both parsers end their message with the location, and serde_yaml_ng starts it with the
    // path of the enclosing map: take both off, to put the path in `field` and the location
    // at the end in one form.
    if let Some((line, column)) = location {
        message = message
            .strip_suffix(&format!(" at line {line} column {column}"))
            .unwrap_or(message);
    }
    if let Some((prefix, rest)) = message.split_once(": ")
        && is_path_prefix(prefix, &field)
    {
        message = rest;
    }
    // A missing field is the parent's error; point at the field itself.
    if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
    }
    let message = match location {
        Some((line, column)) => format!("{message} at line {line} column {column}"),
        None => message.to_string(),
    };
    Problem {
        node: node_of(&field),
        field,
        message,
    }
}

/// Whether `prefix` is `field` or the path of one of its ancestors.
fn is_path_prefix(prefix: &str, field: &str) -> bool {
    !prefix.is_empty()
        && field.starts_with(prefix)
        && matches!(field.as_bytes().get(prefix.len()), None | Some(b'.' | b'['))
}

/// The node a path like `nodes.greet.exits` lies in.
fn node_of(field: &str) -> Option<String> {
    let rest = field.strip_prefix("nodes.")?;
    let id = rest.split(['.', '[']).next().unwrap_or(rest);
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_json_by_its_brace() {
        assert_eq!(Format::detect("  \n{\"name\": 1}"), Format::Json);
        assert_eq!(Format::detect("\u{feff}{}"), Format::Json);
        assert_eq!(Format::detect("name: x"), Format::Yaml);
        assert_eq!(Format::detect(""), Format::Yaml);
        assert_eq!(
            Format::from_path(Path::new("a/post-call.YML")),
            Some(Format::Yaml)
        );
        assert_eq!(Format::from_path(Path::new("p.json")), Some(Format::Json));
        assert_eq!(Format::from_path(Path::new("p.txt")), None);
        assert_eq!(Format::from_path(Path::new("p")), None);
    }

    #[test]
    fn path_prefixes() {
        assert!(is_path_prefix("nodes.a", "nodes.a.exits"));
        assert!(is_path_prefix("config", "config[0]"));
        assert!(is_path_prefix("name", "name"));
        assert!(!is_path_prefix("nodes.a", "nodes.ab"));
        assert!(!is_path_prefix("", "name"));
        assert_eq!(node_of("nodes.greet.exits.x").as_deref(), Some("greet"));
        assert_eq!(node_of("nodes.greet").as_deref(), Some("greet"));
        assert_eq!(node_of("nodes"), None);
        assert_eq!(node_of("start"), None);
    }
}
