//! CEL expressions over a run's or an interaction's data sources, evaluated by the host (a
//! post-flow action's invocation data). The built-in applets evaluate the same language
//! inside the sandbox; both see the data sources the same way.

use coda_types::Values;

/// Evaluates `expression` with every data source visible as `data.NAME` (and, when its
/// name is a CEL identifier, as `NAME`), returning the result as JSON.
pub fn evaluate(expression: &str, data: &Values) -> Result<serde_json::Value, String> {
    // The same parser as the built-in applets' (the cel crate's Pratt parser), so an
    // expression means the same on both sides.
    let program = cel::parser::PrattParser::new()
        .max_expression_node_count(10_000)
        .parse(expression)
        .map_err(|e| format!("the expression does not parse: {e}"))?;
    let mut context = cel::Context::default();
    let mut all = serde_json::Map::new();
    for (name, value) in data {
        let json = value.to_json();
        if is_identifier(name) {
            let value = cel::to_value(&json)
                .map_err(|e| format!("data source {name} cannot be used in CEL: {e}"))?;
            context.add_variable_from_value(name.clone(), value);
        }
        all.insert(name.clone(), json);
    }
    let all = cel::to_value(serde_json::Value::Object(all))
        .map_err(|e| format!("the data sources cannot be used in CEL: {e}"))?;
    context.add_variable_from_value("data", all);
    let result = cel::Value::resolve(&program, &context)
        .map_err(|e| format!("the expression failed: {e}"))?;
    result
        .json()
        .map_err(|e| format!("the expression's result is not JSON: {e:?}"))
}

/// What CEL accepts as a bare variable name (and is not one of its reserved words). The
/// built-in applets apply the same rule in `applets/builtin/expr` (another workspace, built
/// for wasm): keep the two in step, or an expression would see a data source on one side
/// and not on the other.
fn is_identifier(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
        "data",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coda_types::Value;

    fn data() -> Values {
        let mut data = Values::new();
        data.insert("CLID".into(), Value::Text("+15550100".into()));
        data.insert("Dialed Number".into(), Value::Text("+15550199".into()));
        data.insert("Score".into(), Value::Integer(7));
        data.insert(
            "Order".into(),
            Value::Json(r#"{"id": 42, "items": [1, 2]}"#.into()),
        );
        data
    }

    #[test]
    fn sees_data_sources_by_name_and_through_data() {
        let out = evaluate(
            r#"{"caller": CLID, "dialed": data["Dialed Number"], "order": Order.id, "high": Score > 5}"#,
            &data(),
        )
        .unwrap();
        assert_eq!(
            out,
            serde_json::json!({"caller": "+15550100", "dialed": "+15550199", "order": 42, "high": true})
        );
    }

    #[test]
    fn errors_name_what_went_wrong() {
        let parse = evaluate("CLID +", &data()).unwrap_err();
        assert!(parse.contains("does not parse"), "{parse}");
        let missing = evaluate("Nope == 1", &data()).unwrap_err();
        assert!(missing.contains("failed"), "{missing}");
    }
}
