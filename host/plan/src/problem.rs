//! One thing wrong with a plan, located precisely enough for an editor to point at it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing wrong with a plan.
///
/// `field` is a path into the plan as written: `start`, `post_interaction`,
/// `nodes.greet.exits.next`, `nodes.greet.config/set/caller` (a node's config followed by
/// the JSON Pointer of the offending value). It is empty only when the problem is the whole
/// document (it is empty, too large, or not one document). `message` names what was wrong,
/// without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Problem {
    /// The node the problem belongs to, if it belongs to one.
    pub node: Option<String>,
    pub field: String,
    pub message: String,
}

impl Problem {
    /// A problem of the plan as a whole or of one of its top-level fields.
    pub(crate) fn plan(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            node: None,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A problem of the node `id`, at `nodes.<id>` followed by `rest` (`""`, `.applet`,
    /// `.exits.next`, `.config/a/0`).
    pub(crate) fn node(id: &str, rest: &str, message: impl Into<String>) -> Problem {
        Problem {
            node: Some(id.to_string()),
            field: format!("nodes.{id}{rest}"),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_puts_the_field_first() {
        let p = Problem::node("greet", ".exits.nxt", "no such exit");
        assert_eq!(p.to_string(), "nodes.greet.exits.nxt: no such exit");
        assert_eq!(p.node.as_deref(), Some("greet"));
        assert_eq!(
            Problem::plan("", "the plan is empty").to_string(),
            "the plan is empty"
        );
    }
}
