//! CEL (the Common Expression Language) for the built-in applets that evaluate expressions
//! over a run's data sources: Set Data Source and Data Router.
//!
//! An expression sees `data`, a map of every data source, and each data source whose name is
//! a CEL identifier as a variable of its own (`CustomerName`, not `data.CustomerName`). JSON
//! data sources are CEL maps and lists. One module says how data becomes CEL and back, so
//! both applets read and write values the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Display;
use std::sync::{Arc, OnceLock};

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr};
use cel::objects::{Key, Map};
use cel::parser::PrattParser;
use cel::{Context as CelContext, Env, Value as Cel};
use coda_sdk::{Context, Failure, Value, serde_json};

/// The failure code of an expression that does not parse or does not evaluate.
pub const BAD_EXPRESSION: &str = "bad-expression";

/// The failure of `what` (e.g. `rules[2].when`): the expression and CEL's own error text, so
/// whoever reads the run's journal sees which entry to fix and why.
pub fn bad_expression(what: impl Display, source: &str, error: impl Display) -> Failure {
    Failure::new(
        BAD_EXPRESSION,
        format!("{what}: expression `{source}`: {error}"),
    )
}

/// CEL's standard library. Registering it costs about 250 000 instructions, so it is done
/// once per component rather than per step: by [`init`] when the host pre-initializes the
/// applet (the registered library is then in the snapshot every step starts from), else by
/// the step's first evaluation (a step setting only literals never pays it).
static STDLIB: OnceLock<Arc<Env>> = OnceLock::new();

fn stdlib() -> Arc<Env> {
    STDLIB.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

/// The applets' pre-initialization (`export_applet!(A, init = coda_expr::init)`): registers
/// the standard library, then parses and evaluates one expression using the common kinds
/// of call, so that their first-use set-up is in the snapshot too.
pub fn init() {
    let scope = Scope {
        sources: BTreeMap::from([("Name".to_owned(), Cel::String(Arc::new("Ada".into())))]),
    };
    let warm_up = r#"has(data.Name) && Name + "!" == "Ada!" && Name.startsWith("A")
        && size([1, 2].filter(v, v > 1)) == 1 && {"k": 1.5}.k > 1.0 && int("2") == 2"#;
    let _ = scope.eval_source(warm_up);
}

/// The data sources of one run, as an expression sees them.
pub struct Scope {
    sources: BTreeMap<String, Cel>,
}

impl Scope {
    /// The run's data sources as they are when the step starts.
    pub fn new(cx: &Context) -> Self {
        let sources = cx
            .all_data()
            .into_iter()
            .map(|(name, json)| (name, from_json(&json)))
            .collect();
        Scope { sources }
    }

    /// Makes a data source the step has just set visible to the expressions after it.
    pub fn set(&mut self, name: &str, value: &Value) {
        self.sources
            .insert(name.to_owned(), from_json(&coda_sdk::to_json(value)));
    }

    /// Parses an expression (CEL's standard library and macros: `has`, `all`, `exists`,
    /// `map`, `filter`, `size`, string functions…).
    ///
    /// With the `cel` crate's hand-written Pratt parser, not its ANTLR one: the ANTLR
    /// runtime rebuilds its tables in every fresh instance — about 3.5 M fuel (~1 ms) for
    /// the first expression of each step, against tens of thousands here. Both parsers are
    /// the crate's, tested by it against each other.
    pub fn compile(&self, source: &str) -> Result<Program, String> {
        let expression = PrattParser::new()
            .max_expression_node_count(MAX_NODES)
            .parse(source)
            .map_err(|e| e.to_string())?;
        // The parser bounds nesting but not a chain like `1 + 1 + … + 1`, whose evaluation
        // recurses once per operator: deep enough, it would trap the applet on the stack.
        let depth = depth(&expression);
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested {depth} levels deep, more than the {MAX_DEPTH} allowed"
            ));
        }
        let names = identifiers(&expression);
        Ok(Program { expression, names })
    }

    /// Evaluates `program` over the data sources as they are now.
    pub fn eval(&self, program: &Program) -> Result<Cel, String> {
        let mut cx = CelContext::with_env(stdlib());
        // Only what the expression names is made a CEL variable: converting a value costs,
        // and the whole `data` map most of all (about a third of a one-line step).
        if program.names.contains("data") {
            let data: HashMap<Key, Cel> = self
                .sources
                .iter()
                .map(|(name, value)| (Key::String(Arc::new(name.clone())), value.clone()))
                .collect();
            bind(
                &mut cx,
                "data",
                Cel::Map(Map {
                    map: Arc::new(data),
                }),
            )?;
        }
        // `data` is always the map, even if a data source is also called `data`: it is
        // reachable as `data.data` then.
        for name in &program.names {
            if name != "data"
                && is_identifier(name)
                && let Some(value) = self.sources.get(name)
            {
                bind(&mut cx, name, value.clone())?;
            }
        }
        Cel::resolve(&program.expression, &cx).map_err(|e| e.to_string())
    }

    /// Evaluates a condition: anything but a bool is an error.
    pub fn eval_bool(&self, program: &Program) -> Result<bool, String> {
        match self.eval(program)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!(
                "gave a value of type {}, not a bool",
                type_name(&other)
            )),
        }
    }

    /// Compiles and evaluates `source`.
    pub fn eval_source(&self, source: &str) -> Result<Cel, String> {
        self.eval(&self.compile(source)?)
    }
}

/// The deepest expression tree evaluated; measured: about 1000 levels trap on the 1 MiB stack.
const MAX_DEPTH: usize = 250;

/// The most nodes one expression may have after macro expansion.
const MAX_NODES: usize = 10_000;

/// A parsed expression, ready to evaluate any number of times.
pub struct Program {
    expression: IdedExpr,
    /// Every identifier the expression names (variables, and the bound names of macros,
    /// which no data source shadows since macros bind them in a scope of their own).
    names: BTreeSet<String>,
}

/// The identifiers an expression names, walked without recursion.
fn identifiers(root: &IdedExpr) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if let Expr::Ident(name) = &node.expr {
            names.insert(name.clone());
        }
        stack.extend(children(node));
    }
    names
}

/// The depth of an expression tree, walked without recursion.
fn depth(root: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        stack.extend(children(node).into_iter().map(|child| (child, depth + 1)));
    }
    deepest
}

fn children(node: &IdedExpr) -> Vec<&IdedExpr> {
    match &node.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => entries(&map.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Select(select) => vec![&select.operand],
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => Vec::new(),
    }
}

fn entries(entries: &[IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|e| match &e.expr {
            EntryExpr::StructField(field) => vec![&field.value],
            EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
        })
        .collect()
}

fn bind(cx: &mut CelContext<'_, '_>, name: &str, value: Cel) -> Result<(), String> {
    // Through `try_into` rather than `add_variable`, which unwraps the same conversion.
    let value = value
        .try_into()
        .map_err(|e| format!("data source `{name}` has no CEL form: {e}"))?;
    cx.add_variable_as_val(name, value);
    Ok(())
}

/// CEL's reserved words: a data source named like one is reachable only as `data.NAME`.
/// Post-flow expressions follow it too: the host evaluates them through `set-data`.
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
];

/// Whether `name` can be written as a bare CEL identifier: `[_a-zA-Z][_a-zA-Z0-9]*`, not a
/// reserved word.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !RESERVED.contains(&name)
}

/// JSON as CEL: integers that fit stay integers (`int`, else `uint`), other numbers are
/// `double`, objects are maps with string keys.
pub fn from_json(json: &serde_json::Value) -> Cel {
    match json {
        serde_json::Value::Null => Cel::Null,
        serde_json::Value::Bool(b) => Cel::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                Cel::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Cel::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Cel::List(Arc::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(fields) => Cel::Map(Map {
            map: Arc::new(
                fields
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
                    .collect(),
            ),
        }),
    }
}

/// A CEL result as a data-source value: scalars as their variant, lists and maps as JSON.
/// Fails for what a data source cannot hold (bytes, a non-finite double, a `uint` beyond
/// `int`'s range, types and functions).
pub fn to_value(value: &Cel) -> Result<Value, String> {
    Ok(match value {
        Cel::Null => Value::Null,
        Cel::Bool(b) => Value::Boolean(*b),
        Cel::Int(i) => Value::Integer(*i),
        Cel::UInt(u) => Value::Integer(
            i64::try_from(*u).map_err(|_| format!("{u}u is too large for a data source"))?,
        ),
        Cel::Float(f) if f.is_finite() => Value::Number(*f),
        Cel::String(s) => Value::Text(s.as_str().to_owned()),
        Cel::List(_) | Cel::Map(_) => Value::Json(to_json(value)?.to_string()),
        other => return Err(unstorable(other)),
    })
}

/// A CEL value as JSON (map keys become strings).
pub fn to_json(value: &Cel) -> Result<serde_json::Value, String> {
    Ok(match value {
        Cel::Null => serde_json::Value::Null,
        Cel::Bool(b) => (*b).into(),
        Cel::Int(i) => (*i).into(),
        Cel::UInt(u) => (*u).into(),
        Cel::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| unstorable(value))?,
        Cel::String(s) => s.as_str().into(),
        Cel::List(items) => items
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        Cel::Map(map) => {
            let mut fields = serde_json::Map::new();
            for (key, item) in map.map.iter() {
                let key = match key {
                    Key::String(s) => s.as_str().to_owned(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                fields.insert(key, to_json(item)?);
            }
            fields.into()
        }
        other => return Err(unstorable(other)),
    })
}

fn unstorable(value: &Cel) -> String {
    let what = match value {
        Cel::Float(f) => return format!("the number {f} cannot be stored in a data source"),
        Cel::Bytes(_) => "bytes",
        Cel::Function(..) => "a function",
        Cel::Opaque(_) => "an opaque value (an optional?)",
        Cel::Struct(_) => "a message",
        _ => "this value",
    };
    format!("{what} cannot be stored in a data source")
}

/// The name of a CEL value's type, for messages (`expected a bool, got string`).
pub fn type_name(value: &Cel) -> String {
    value.type_of().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_cel_identifiers() {
        assert!(is_identifier("CustomerName"));
        assert!(is_identifier("_x1"));
        assert!(!is_identifier("1x"));
        assert!(!is_identifier("Last-Error"));
        assert!(!is_identifier("in"));
        assert!(!is_identifier(""));
    }

    #[test]
    fn json_round_trips() {
        let json = serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {"c": -3}});
        assert_eq!(to_json(&from_json(&json)), Ok(json));
    }
}
