//! The plan as data: what a parsed plan file holds, and the syntax of its names.
//!
//! These types are the canonical form of a plan. They deserialize from YAML or JSON (the
//! stored form is JSON) and refuse unknown fields and repeated keys, but they do not check
//! names, references or the graph: that is [`crate::validate`]'s work, which reports every
//! problem at once instead of the first one serde meets.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::MAX_NAME_LEN;
use coda_types::names::{is_exact_version, is_valid_name};

/// What a plan runs alongside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanType {
    /// A live plan: a voice call with a party on the line.
    Default,
    /// A live plan for a digital conversation (chat, SMS, email).
    Message,
    /// A plan that runs with no interaction present, such as a post-interaction process.
    /// Only applets that do not need a live party may appear in it.
    Unattended,
}

impl PlanType {
    /// The name used in plan files.
    pub fn name(self) -> &'static str {
        match self {
            PlanType::Default => "default",
            PlanType::Message => "message",
            PlanType::Unattended => "unattended",
        }
    }
}

impl fmt::Display for PlanType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An interaction plan: a graph of applet nodes, entered at `start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The plan's name, unique within a tenant; see [`is_valid_name`].
    pub name: String,
    #[serde(rename = "type")]
    pub plan_type: PlanType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The id of the node a run begins at.
    pub start: String,
    /// The plan started when an interaction run under this plan ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_interaction: Option<String>,
    /// Node ids to nodes. A repeated id is refused when parsing rather than silently
    /// replacing the earlier node.
    #[serde(deserialize_with = "unique_nodes")]
    pub nodes: BTreeMap<String, Node>,
}

/// One step of a plan: an applet, its configuration and where each of its exits leads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub applet: AppletRef,
    /// The applet's configuration, checked against the applet's JSON Schema. `{}` when the
    /// file leaves it out.
    #[serde(default = "empty_object", deserialize_with = "strict_json")]
    pub config: serde_json::Value,
    /// Exit names to the ids of the nodes they lead to. An exit left out ends the run when
    /// the applet takes it.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_exits"
    )]
    pub exits: BTreeMap<String, String>,
    /// The node a failure of this step leads to. Left out, a failure ends the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Node {
    /// A node running `applet` with an empty config and nothing wired.
    pub fn new(applet: AppletRef) -> Node {
        Node {
            applet,
            config: empty_object(),
            exits: BTreeMap::new(),
            error: None,
        }
    }

    /// The ids this node leads to: its exits' targets in exit-name order, then its error
    /// target.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.exits
            .values()
            .map(String::as_str)
            .chain(self.error.as_deref())
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// An exact reference to an installed applet: `NAME@VERSION`.
///
/// The version is exact (`MAJOR.MINOR.PATCH`, optionally with a semver pre-release or build
/// suffix) so that a plan runs the code it was validated against: installing a newer
/// version of an applet never changes what an existing plan does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppletRef {
    name: String,
    version: String,
}

impl AppletRef {
    /// Checks both parts; see [`is_valid_name`] and [`is_exact_version`].
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> Result<AppletRef, AppletRefError> {
        let (name, version) = (name.into(), version.into());
        if !is_valid_name(&name) {
            return Err(AppletRefError::Name(name));
        }
        if !is_exact_version(&version) {
            return Err(AppletRefError::Version { name, version });
        }
        Ok(AppletRef { name, version })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

impl fmt::Display for AppletRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Why a string is not an applet reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppletRefError {
    #[error("the applet reference {} has no version: write NAME@VERSION, like {}@0.1.0", quote(.0), shorten(.0, QUOTED_CHARS))]
    NoVersion(String),
    #[error(
        "the applet name {} is not valid: use 1 to {MAX_NAME_LEN} of a-z 0-9 . _ -, starting with a letter or digit",
        quote(.0)
    )]
    Name(String),
    #[error(
        "the version {} of the applet {} is not an exact version: write MAJOR.MINOR.PATCH, like 0.1.0",
        quote(.version),
        shorten(.name, QUOTED_CHARS)
    )]
    Version { name: String, version: String },
}

impl FromStr for AppletRef {
    type Err = AppletRefError;

    fn from_str(s: &str) -> Result<AppletRef, AppletRefError> {
        match s.split_once('@') {
            Some((name, version)) => AppletRef::new(name, version),
            None => Err(AppletRefError::NoVersion(s.to_string())),
        }
    }
}

impl Serialize for AppletRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AppletRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<AppletRef, D::Error> {
        struct RefVisitor;
        impl Visitor<'_> for RefVisitor {
            type Value = AppletRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an applet reference NAME@VERSION")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AppletRef, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(RefVisitor)
    }
}

/// Whether `id` is a valid node id: 1 to [`crate::MAX_NODE_ID_LEN`] characters of
/// `A-Z a-z 0-9 _ -`.
pub fn is_valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::MAX_NODE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `s` in double quotes, escaped, and cut short if long: for user text inside a message.
pub(crate) fn quote(s: &str) -> String {
    format!("{:?}", shorten(s, QUOTED_CHARS))
}

/// How much of a name from the input a message repeats: enough to recognise it, not so much
/// that a megabyte-long key makes a megabyte-long message.
pub(crate) const QUOTED_CHARS: usize = 80;

/// `s` cut to at most `max` characters, marked with `…` when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

// ---- Deserialization helpers ----
//
// serde's maps keep the last of two equal keys. In a plan that would silently drop a node or
// rewire an exit, so the maps of a plan and the objects in a config refuse repeated keys.

fn unique_nodes<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Node>, D::Error> {
    d.deserialize_map(UniqueMap::new("the node id", "is defined twice"))
}

fn unique_exits<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_map(UniqueMap::new("the exit", "is wired twice"))
}

struct UniqueMap<V> {
    what: &'static str,
    problem: &'static str,
    marker: std::marker::PhantomData<V>,
}

impl<V> UniqueMap<V> {
    fn new(what: &'static str, problem: &'static str) -> Self {
        UniqueMap {
            what,
            problem,
            marker: std::marker::PhantomData,
        }
    }
}

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueMap<V> {
    type Value = BTreeMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "{} {} {}",
                    self.what,
                    quote(&key),
                    self.problem
                )));
            }
            let value = map.next_value()?;
            out.insert(key, value);
        }
        Ok(out)
    }
}

fn strict_json<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    StrictJson::deserialize(d).map(|s| s.0)
}

/// JSON as a plan file writes it, refusing what a JSON document cannot hold faithfully: a
/// repeated key in an object, and (from YAML) a NaN or an infinity.
struct StrictJson(serde_json::Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StrictJson, D::Error> {
        // Nesting depth is bounded by the deserializer: serde_json and serde_yaml_ng both
        // stop at 128 levels, so this recursion cannot exhaust the stack.
        d.deserialize_any(StrictJsonVisitor).map(StrictJson)
    }
}

struct StrictJsonVisitor;

impl<'de> Visitor<'de> for StrictJsonVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom(format_args!("{v} is not a number JSON can hold")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        StrictJson::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictJson(value)) = seq.next_element()? {
            out.push(value);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {} appears twice",
                    quote(&key)
                )));
            }
            let StrictJson(value) = map.next_value()?;
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_refs_parse_and_display() {
        let r: AppletRef = "set-data-source@0.1.0".parse().unwrap();
        assert_eq!(r.name(), "set-data-source");
        assert_eq!(r.version(), "0.1.0");
        assert_eq!(r.to_string(), "set-data-source@0.1.0");
        assert!("sms@1.2.3-rc.1+build.5".parse::<AppletRef>().is_ok());
    }

    #[test]
    fn applet_ref_errors_say_what_is_wrong() {
        let e = "set-data-source".parse::<AppletRef>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the applet reference \"set-data-source\" has no version: write NAME@VERSION, like set-data-source@0.1.0"
        );
        let e = "sms@^0.1".parse::<AppletRef>().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the version \"^0.1\" of the applet sms is not an exact version"),
            "{e}"
        );
        let e = "SMS@0.1.0".parse::<AppletRef>().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the applet name \"SMS\" is not valid"),
            "{e}"
        );
        assert!(matches!(
            "@0.1.0".parse::<AppletRef>(),
            Err(AppletRefError::Name(_))
        ));
        assert!(matches!(
            "a@".parse::<AppletRef>(),
            Err(AppletRefError::Version { .. })
        ));
    }

    #[test]
    fn exact_versions() {
        for ok in [
            "0.1.0",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1+sha.5114f85",
        ] {
            assert!(is_exact_version(ok), "{ok}");
        }
        for bad in [
            "",
            "0.1",
            "0.1.*",
            "^0.1.0",
            "01.0.0",
            "1.0.0-",
            "1.0.0+",
            "1..0",
            "1.0.0.0",
            "v1.0.0",
            "1.0.0-a..b",
            " 1.0.0",
        ] {
            assert!(!is_exact_version(bad), "{bad}");
        }
    }

    #[test]
    fn names_and_node_ids() {
        assert!(is_valid_name("post-call"));
        assert!(is_valid_name("0day.v2_x"));
        assert!(is_valid_name(&"a".repeat(64)));
        assert!(!is_valid_name(&"a".repeat(65)));
        for bad in ["", "-x", ".x", "Post", "a b", "a@b", "a/b", "é"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_valid_node_id("Greet_2-a"));
        assert!(is_valid_node_id(&"N".repeat(64)));
        assert!(!is_valid_node_id(&"N".repeat(65)));
        for bad in ["", "a.b", "a b", "a/b", "ü"] {
            assert!(!is_valid_node_id(bad), "{bad}");
        }
    }

    #[test]
    fn long_text_is_shortened_in_messages() {
        let long = "x".repeat(1000);
        let q = quote(&long);
        assert!(q.chars().count() < 100, "{q}");
        assert!(q.ends_with("…\""));
        assert_eq!(quote("ü\""), "\"ü\\\"\"");
    }
}
