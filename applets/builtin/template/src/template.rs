//! Templates over a run's data sources: `{{ CLID }}`, `{{ data["Order Id"] }}`,
//! `{{ secrets.token }}`, `{{ OrderId | urlencode }}`, `{{ Customer | tojson }}`.
//!
//! MiniJinja, built with only its `builtins` (filters such as `default`, `lower`, `trim`,
//! `join`) and `json` (`tojson`) features: no filesystem loader, no macros, no includes, so
//! a template can reach nothing but the values it is given. The sandbox's fuel, memory and
//! deadline bound what a template can cost.

use std::sync::OnceLock;

use coda_sdk::Failure;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// How rendered values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As they are: URLs (use `urlencode`), headers, subjects, plain text, JSON bodies (use
    /// `tojson`).
    Text,
    /// HTML-escaped, so that a customer's name cannot inject markup into an HTML email.
    /// `{{ x | safe }}` opts out for a value known to be HTML.
    Html,
}

/// The names under which the whole sets are reachable; a data source of the same name is
/// reachable only as `data.<name>`.
const DATA: &str = "data";
const SECRETS: &str = "secrets";

/// Template names carry the mode to the auto-escape callback (which sees only the name).
const HTML_SUFFIX: &str = "#html";

/// RFC 3986 unreserved characters stay, everything else is percent-encoded: `/`, `?`, `&`,
/// `#`, `+` and spaces included, so a value stays one path segment or one query value.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One engine and one context, for every template of an invocation.
pub struct Templates {
    env: &'static Environment<'static>,
    context: Value,
}

/// The engine with coda's settings and filters. Setting it up (MiniJinja registers its
/// built-in filters, tests and functions) costs more than rendering a template, so it is
/// built once per component and shared: by [`init`] when the host pre-initializes the
/// applet (it is then in the snapshot every step starts from), else by the step's first
/// template. Templates are compiled from it without being stored in it
/// (`template_from_named_str`), so nothing of one step's templates stays in it.
static ENGINE: OnceLock<Environment<'static>> = OnceLock::new();

/// The applets' pre-initialization (`export_applet!(A, init = coda_template::init)`): builds
/// the engine and renders a template of each mode with the filters applets use, so that
/// their first-use set-up is in the snapshot too.
pub fn init() {
    let data = serde_json::json!({"Name": "Ada", "Id": "a/b", "Items": [1, 2]});
    let serde_json::Value::Object(data) = data else {
        return;
    };
    let templates = Templates::new(data, vec![("token".into(), "t".into())]);
    let warm_up = "{{ Name | default('there') | lower | trim }} {{ Id | urlencode }} \
                   {{ Items | tojson }} {{ data.Name }} {{ secrets.token }}\
                   {% for i in Items %}{% if i > 1 %}{{ i }}{% endif %}{% endfor %}";
    let _ = templates.render("init", warm_up);
    let _ = templates.render_as("init", "<p>{{ Name }}</p>", Mode::Html);
}

fn engine() -> &'static Environment<'static> {
    ENGINE.get_or_init(|| {
        let mut env = Environment::new();
        // Printing or iterating a data source that is not there is an error naming the
        // template, not an empty string: an SMS to "" or an email saying "Dear ," is worse
        // than a failed step. `{% if X %}` and `X | default("…")` still handle optional ones.
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(HTML_SUFFIX) {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // Replaces the built-in `urlencode`, which leaves `/` alone (as Jinja2 does): a value
        // put in a URL path must not be able to add path segments.
        env.add_filter("urlencode", urlencode);
        env
    })
}

impl Templates {
    /// The engine over `data` (all data sources of the run, as JSON) and `secrets`
    /// (alias, value).
    pub fn new(
        data: serde_json::Map<String, serde_json::Value>,
        secrets: Vec<(String, String)>,
    ) -> Self {
        let top_level = data
            .iter()
            .filter(|(name, _)| is_identifier(name) && *name != DATA && *name != SECRETS)
            .map(|(name, value)| (name.clone(), from_json(value)))
            .collect::<Vec<_>>();
        let data = Value::from_pairs(data.iter().map(|(k, v)| (k.clone(), from_json(v))));
        let secrets = Value::from_pairs(secrets);
        let context = Value::from_pairs(
            top_level
                .into_iter()
                .chain([(DATA.to_string(), data), (SECRETS.to_string(), secrets)]),
        );
        Templates {
            env: engine(),
            context,
        }
    }

    /// Renders `source` as plain text; `field` names it in a failure (`url`, `headers.X`).
    pub fn render(&self, field: &str, source: &str) -> Result<String, Failure> {
        self.render_as(field, source, Mode::Text)
    }

    /// Renders `source`, escaping values as `mode` says.
    pub fn render_as(&self, field: &str, source: &str, mode: Mode) -> Result<String, Failure> {
        let name = match mode {
            Mode::Text => field.to_string(),
            Mode::Html => format!("{field}{HTML_SUFFIX}"),
        };
        let template = self
            .env
            .template_from_named_str(&name, source)
            .map_err(|e| template_failure(field, &e, &[]))?;
        template.render(self.context.clone()).map_err(|e| {
            // MiniJinja's error says a value was undefined, not which: find the names the
            // template uses that the context lacks (names only, never values).
            let missing = if e.kind() == ErrorKind::UndefinedError {
                let mut names = template
                    .undeclared_variables(true)
                    .into_iter()
                    .filter(|path| !self.resolves(path))
                    .collect::<Vec<_>>();
                names.sort();
                names
            } else {
                Vec::new()
            };
            template_failure(field, &e, &missing)
        })
    }

    /// Whether a dotted path the template uses (`CLID`, `data.OrderId`, `Customer.name`)
    /// names something in the context.
    fn resolves(&self, path: &str) -> bool {
        let mut value = self.context.clone();
        for segment in path.split('.') {
            match value.get_attr(segment) {
                Ok(next) if !next.is_undefined() => value = next,
                _ => return false,
            }
        }
        true
    }
}

/// A template that does not render: never retryable (the same data renders the same way).
/// The message names the field and the line, not the template's values, which may hold
/// secrets.
fn template_failure(field: &str, error: &Error, missing: &[String]) -> Failure {
    let what = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    let line = error
        .line()
        .map(|l| format!(" (line {l})"))
        .unwrap_or_default();
    let missing = if missing.is_empty() {
        String::new()
    } else {
        format!("; not set: {}", missing.join(", "))
    };
    Failure::new(
        "template",
        format!("template `{field}`: {what}{line}{missing}"),
    )
}

/// `value | urlencode`: one URL component (a map becomes `k=v&k=v`, for a query string).
fn urlencode(value: &Value) -> Result<String, Error> {
    let encode = |v: &Value| -> String {
        match v.as_str() {
            Some(s) => utf8_percent_encode(s, URL_COMPONENT).to_string(),
            None => utf8_percent_encode(&v.to_string(), URL_COMPONENT).to_string(),
        }
    };
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "urlencode of an undefined value",
        ));
    }
    if value.is_none() {
        return Ok(String::new());
    }
    if value.kind() != ValueKind::Map {
        return Ok(encode(value));
    }
    let mut pairs = Vec::new();
    for key in value.try_iter()? {
        let item = value.get_item(&key)?;
        if item.is_none() || item.is_undefined() {
            continue;
        }
        pairs.push(format!("{}={}", encode(&key), encode(&item)));
    }
    Ok(pairs.join("&"))
}

/// Data-source names usable as template variables: `CLID`, `order_id`, not `Order Id`.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// JSON as a template value (MiniJinja's own `serde` support would add a serializer for the
/// one type we hand it).
fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(from_json).collect(),
        serde_json::Value::Object(map) => {
            Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), from_json(v))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(data: serde_json::Value) -> Templates {
        let serde_json::Value::Object(data) = data else {
            panic!("test data must be an object")
        };
        Templates::new(data, vec![("token".into(), "s3cret".into())])
    }

    #[test]
    fn data_sources_by_name_and_under_data() {
        let t =
            templates(json!({"CLID": "+15550100", "Order Id": 42, "Customer": {"name": "Ann"}}));
        assert_eq!(t.render("x", "{{ CLID }}").unwrap(), "+15550100");
        assert_eq!(t.render("x", "{{ data.CLID }}").unwrap(), "+15550100");
        assert_eq!(t.render("x", r#"{{ data["Order Id"] }}"#).unwrap(), "42");
        assert_eq!(t.render("x", "{{ Customer.name }}").unwrap(), "Ann");
        assert_eq!(t.render("x", "{{ secrets.token }}").unwrap(), "s3cret");
    }

    #[test]
    fn a_data_source_cannot_shadow_data_or_secrets() {
        let t = templates(json!({"data": "mine", "secrets": "mine"}));
        assert_eq!(t.render("x", "{{ data.data }}").unwrap(), "mine");
        assert_eq!(t.render("x", "{{ secrets.token }}").unwrap(), "s3cret");
    }

    #[test]
    fn urlencode_keeps_a_value_in_one_component() {
        let t = templates(
            json!({"Id": "a/b c&d=e?f#g+h", "Name": "Zoë", "N": 7, "Q": {"q": "x y", "n": null}}),
        );
        assert_eq!(
            t.render("url", "/orders/{{ Id | urlencode }}").unwrap(),
            "/orders/a%2Fb%20c%26d%3De%3Ff%23g%2Bh"
        );
        assert_eq!(
            t.render("url", "{{ Name | urlencode }}").unwrap(),
            "Zo%C3%AB"
        );
        assert_eq!(t.render("url", "{{ N | urlencode }}").unwrap(), "7");
        assert_eq!(t.render("url", "?{{ Q | urlencode }}").unwrap(), "?q=x%20y");
        assert_eq!(
            t.render("url", "{{ 'a-b.c_d~e' | urlencode }}").unwrap(),
            "a-b.c_d~e"
        );
    }

    #[test]
    fn a_missing_data_source_is_a_failure_naming_the_field() {
        let t = templates(json!({}));
        let failure = t.render("subject", "Hello {{ Name }}").unwrap_err();
        assert_eq!(failure.code, "template");
        assert!(!failure.retryable);
        assert!(failure.message.contains("`subject`"), "{}", failure.message);
        assert!(failure.message.contains("undefined"), "{}", failure.message);
        assert!(
            failure.message.ends_with("not set: Name"),
            "{}",
            failure.message
        );
        let failure = t
            .render(
                "body",
                "{{ data.OrderId }} {{ secrets.token }} {{ secrets.other }}",
            )
            .unwrap_err();
        assert!(
            failure
                .message
                .ends_with("not set: data.OrderId, secrets.other"),
            "{}",
            failure.message
        );
        assert!(t.render("url", "{{ Id | urlencode }}").is_err());
        // … but optional ones can be handled.
        assert_eq!(
            t.render("x", "Hello {{ Name | default('there') }}")
                .unwrap(),
            "Hello there"
        );
        assert_eq!(
            t.render("x", "{% if Name %}{{ Name }}{% else %}-{% endif %}")
                .unwrap(),
            "-"
        );
    }

    #[test]
    fn a_syntax_error_is_a_failure_with_its_line() {
        let t = templates(json!({}));
        let failure = t.render("body", "line one\n{{ oops").unwrap_err();
        assert_eq!(failure.code, "template");
        assert!(failure.message.contains("line 2"), "{}", failure.message);
    }

    #[test]
    fn html_mode_escapes_values_and_text_mode_does_not() {
        let t = templates(json!({"Name": "<b>Ann</b> & co"}));
        assert_eq!(
            t.render_as("html", "<p>{{ Name }}</p>", Mode::Html)
                .unwrap(),
            "<p>&lt;b&gt;Ann&lt;&#x2f;b&gt; &amp; co</p>"
        );
        assert_eq!(t.render("text", "{{ Name }}").unwrap(), "<b>Ann</b> & co");
    }

    #[test]
    fn tojson_for_json_bodies() {
        let t = templates(json!({"Name": "Ann \"A\"", "Items": [1, 2.5, true, null]}));
        assert_eq!(
            t.render(
                "body",
                r#"{"name": {{ Name | tojson }}, "items": {{ Items | tojson }}}"#
            )
            .unwrap(),
            r#"{"name": "Ann \"A\"", "items": [1, 2.5, true, null]}"#
        );
    }

    #[test]
    fn no_template_can_load_another() {
        let t = templates(json!({}));
        assert!(t.render("x", r#"{% include "/etc/passwd" %}"#).is_err());
    }
}
