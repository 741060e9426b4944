//! The one way the host reads YAML (plans, fixtures, manifests, grants and settings files,
//! config files): bounded in nesting and in *expanded* size before anything is built.
//!
//! YAML's anchors and aliases let a small text stand for a large document: one 20 KB string
//! anchored once and aliased 100 000 times is 320 KB of text and 2 GB of strings once
//! deserialized. serde_yaml_ng bounds the number of alias jumps (100 per event) and the
//! nesting (128 levels), but not what each jump copies. So before the caller's type is
//! built, [`check`] walks the same parser's events once, with aliases followed, adding up
//! what the document expands to (one unit per node plus the bytes of each string), and
//! refuses past [`expanded_limit`]; the walk stops at the limit, so its own work is bounded
//! by it and it allocates nothing per node. The walk uses serde_yaml_ng itself, not a second
//! parser, so both passes read the text the same way.
//!
//! Every YAML reader in the host goes through [`deserializer`] or [`from_str`]; clippy's
//! `disallowed-methods` (in `clippy.toml`) refuses serde_yaml_ng's own entry points
//! elsewhere.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer as _, Visitor};

/// The deepest bracket nesting a YAML text may have (serde_yaml_ng's own depth limit).
pub const MAX_NESTING: usize = 128;

/// How many times its text's length a document may expand to through aliases.
///
/// Without aliases a document's expanded size (one unit per node, plus string bytes) is at
/// most about 1.5 times its text: every node takes at least two bytes of text (itself and a
/// separator), and the longest escapes (`\L`, `\P`: two bytes for three) grow by half. So 4
/// never refuses a document for its plain size, and bounds what aliases can add to a small
/// multiple of what the caller's own size limit already allows.
pub const EXPANSION_FACTOR: usize = 4;

/// The expanded size every document may reach whatever its length, so that a short file
/// may still reuse a block through anchors freely.
pub const EXPANDED_FLOOR: usize = 1024 * 1024;

/// The expanded size a text of `len` bytes may reach: [`EXPANSION_FACTOR`] times its length,
/// and at least [`EXPANDED_FLOOR`].
pub fn expanded_limit(len: usize) -> usize {
    len.saturating_mul(EXPANSION_FACTOR).max(EXPANDED_FLOOR)
}

/// Why a YAML text was refused before it was deserialized. Written to follow its subject:
/// "the plan {refused}", "the YAML {refused}".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("nests brackets more than {MAX_NESTING} levels deep at line {line} column {column}")]
    TooDeep { line: usize, column: usize },
    #[error(
        "expands through its anchors and aliases to more than {limit} bytes (the limit is {EXPANSION_FACTOR} times the text's size, at least {EXPANDED_FLOOR}): repeat less through aliases"
    )]
    TooLarge { limit: usize },
}

/// A YAML text that could not be read: refused by the bounds, or not valid for the type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the YAML {0}")]
    Refused(#[from] Refused),
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// A deserializer over `text` (one document), once [`check`] has passed: for callers that
/// want the deserializer itself (to track the path of an error, say).
#[allow(clippy::disallowed_methods)] // the one place that may build it
pub fn deserializer(text: &str) -> Result<serde_yaml_ng::Deserializer<'_>, Refused> {
    check(text)?;
    Ok(serde_yaml_ng::Deserializer::from_str(text))
}

/// Deserializes one document of `text` into `T`, once [`check`] has passed.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    Ok(T::deserialize(deserializer(text)?)?)
}

/// Refuses `text` if it nests brackets deeper than [`MAX_NESTING`] or expands through
/// aliases past [`expanded_limit`]. Text that is not valid YAML passes: the deserializer
/// that follows reports it, with its location.
pub fn check(text: &str) -> Result<(), Refused> {
    too_deep(text)?;
    let limit = expanded_limit(text.len());
    let walk = Walk {
        left: Cell::new(limit),
        exceeded: Cell::new(false),
    };
    #[allow(clippy::disallowed_methods)] // the check itself
    let de = serde_yaml_ng::Deserializer::from_str(text);
    // Any error but ours is the parser's, reported by the real deserialization.
    let _ = de.deserialize_any(&walk);
    if walk.exceeded.get() {
        return Err(Refused::TooLarge { limit });
    }
    Ok(())
}

/// Refuses YAML whose brackets nest deeper than [`MAX_NESTING`], before libyaml sees it.
///
/// serde_yaml_ng stops deserializing at 128 levels, but only after libyaml has scanned the
/// whole text, and libyaml's scanner does work proportional to the bracket depth for every
/// token: 100 000 nested `[` (100 KB) take it tens of seconds. Counting is deliberately
/// blunt: brackets inside strings and comments count too, so it can only err towards
/// refusing, and only text with more than 128 unclosed brackets, which no real document
/// has. Block (indented) nesting needs no check: its indentation grows with depth, so the
/// caller's size limit bounds it, and libyaml handles that quickly.
fn too_deep(text: &str) -> Result<(), Refused> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    for c in text.chars() {
        column += 1;
        match c {
            '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Refused::TooDeep { line, column });
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            '\n' => (line, column) = (line + 1, 0),
            _ => {}
        }
    }
    Ok(())
}

/// The expansion walk: visits every node, aliases followed, spending one unit per node and
/// one per byte of a string or key, and stops with an error when the budget is spent.
struct Walk {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Walk {
    fn spend<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom("the expansion limit is reached"))
            }
        }
    }
}

impl<'de> de::DeserializeSeed<'de> for &Walk {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.spend(1usize.saturating_add(v.len()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        self.spend(1usize.saturating_add(v.len()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.spend(1)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(1)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    /// A tagged node (`!Name value`): the tag, then the value.
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use de::VariantAccess;
        let ((), variant) = data.variant_seed(self)?;
        variant.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` aliases of one `size`-byte anchored string.
    fn aliased(size: usize, count: usize) -> String {
        let mut text = format!("anchor: &big {}\nmany:\n", "x".repeat(size));
        for _ in 0..count {
            text.push_str("- *big\n");
        }
        text
    }

    #[test]
    fn a_large_anchor_aliased_many_times_is_refused() {
        // The review's plan: 20 KB anchored once, aliased 100 000 times (~2 GB expanded).
        let text = aliased(20 * 1024, 100_000);
        let start = std::time::Instant::now();
        let refused = from_str::<serde_json::Value>(&text).unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(refused, Error::Refused(Refused::TooLarge { limit }) if limit == expanded_limit(text.len())),
            "{message}"
        );
        assert!(
            message.contains("expands through its anchors and aliases to more than"),
            "{message}"
        );
        // The walk stops at the limit: about 65 aliases' worth, not 100 000.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn nested_aliases_count_multiplicatively() {
        // Ten levels of ten aliases each: 10^10 leaves from a few hundred bytes.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        // serde_yaml_ng's own limit on alias jumps (100 per event) stops this one first, in
        // the check's walk and in the deserializer, which then reports it.
        let refused = from_str::<serde_json::Value>(&text)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("repetition limit"), "{refused}");
        // A sequence of aliases to a sequence that itself holds a big string: each outer
        // alias brings the whole inner expansion.
        let inner = format!("big: &big {}\n", "y".repeat(100_000));
        let text =
            format!("{inner}mid: &mid [*big, *big, *big]\nouter: [*mid, *mid, *mid, *mid]\n");
        // 12 copies of 100 KB: 1.2 MB, over the 1 MiB floor that a 100 KB text gets.
        assert!(matches!(check(&text), Err(Refused::TooLarge { .. })));
    }

    #[test]
    fn small_anchors_and_plain_documents_pass() {
        let text = "base: &base { retries: 3, timeout: 10 }\na: *base\nb: *base\n";
        let value: serde_json::Value = from_str(text).unwrap();
        assert_eq!(value["b"]["retries"], 3);
        // 1000 aliases of a 500-byte block: 500 KB expanded, under the floor.
        let text = aliased(500, 1000);
        let value: serde_json::Value = from_str(&text).unwrap();
        assert_eq!(value["many"].as_array().map(Vec::len), Some(1000));
        // The densest plain document (a node per two bytes) expands to no more than itself.
        let dense = format!("[{}]", vec!["1"; 500_000].join(","));
        check(&dense).unwrap();
        let strings = format!("[{}]", vec!["\"\\L\\L\\L\\L\""; 100_000].join(","));
        check(&strings).unwrap();
    }

    #[test]
    fn deep_brackets_are_refused_with_their_place() {
        let text = format!("a:\n  {}", "[".repeat(200));
        assert_eq!(
            check(&text),
            Err(Refused::TooDeep {
                line: 2,
                column: 2 + MAX_NESTING + 1
            })
        );
    }

    #[test]
    fn tagged_nodes_and_invalid_text_are_walked_or_left_to_the_parser() {
        let big = "z".repeat(300_000);
        let text = format!("a: &t !Tag {{ v: {big} }}\nb: [*t, *t, *t, *t]\n");
        assert!(matches!(check(&text), Err(Refused::TooLarge { .. })));
        // Not YAML: the check passes, the deserializer names the problem.
        check("a: [1, 2").unwrap();
        assert!(matches!(
            from_str::<serde_json::Value>("a: [1, 2"),
            Err(Error::Yaml(_))
        ));
    }
}
