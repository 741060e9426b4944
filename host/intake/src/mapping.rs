//! How a platform's attributes become data sources: each data source name has places in
//! the payload (JSON pointers, RFC 6901), tried in order; the first that holds a value
//! gives it. Each adapter has defaults for the data sources coda's plans expect; the
//! tenant's mapping replaces a default by name, adds others, or drops one with `null`.
//!
//! The adapter reads three of them itself: [`AGENT`] (who joined: the agent's id),
//! [`QUEUE`] (the skill the interaction was routed by) and [`OUTCOME`] (what it ended
//! with), so a tenant that moves them moves what coda keys by too.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use crate::{AdapterKind, Sources};
use coda_types::names::NameKind;

/// The caller's number.
pub const CLID: &str = "CLID";
/// The number the caller dialed.
pub const DIALED_NUMBER: &str = "DialedNumber";
pub const LANGUAGE: &str = "Language";
/// The queue (or skill) the interaction was routed by; also the interaction's skill when it
/// is a valid skill name.
pub const QUEUE: &str = "Queue";
/// The agent who handled it; also the agent id of the party that joined.
pub const AGENT: &str = "Agent";
/// What the interaction ended with: the engine's `InteractionOutcome`.
pub const OUTCOME: &str = "Outcome";

/// The adapter's default places for each data source.
pub fn defaults(adapter: AdapterKind) -> &'static [(&'static str, &'static [&'static str])] {
    match adapter {
        AdapterKind::Twilio => crate::twilio::DEFAULTS,
        AdapterKind::AmazonConnect => crate::connect::DEFAULTS,
        AdapterKind::Genesys => crate::genesys::DEFAULTS,
        AdapterKind::Cloudevents => crate::cloudevents::DEFAULTS,
    }
}

/// A connection's mapping, defaults and the tenant's entries merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    entries: BTreeMap<String, Vec<String>>,
}

impl Mapping {
    pub fn new(
        defaults: &[(&str, &[&str])],
        overrides: &BTreeMap<String, Option<Sources>>,
    ) -> Mapping {
        let mut entries: BTreeMap<String, Vec<String>> = defaults
            .iter()
            .map(|(name, pointers)| {
                (
                    (*name).to_owned(),
                    pointers.iter().map(|p| (*p).to_owned()).collect(),
                )
            })
            .collect();
        for (name, sources) in overrides {
            match sources {
                Some(sources) => {
                    entries.insert(name.clone(), sources.pointers());
                }
                None => {
                    entries.remove(name);
                }
            }
        }
        Mapping { entries }
    }

    /// Each data source and its places, by name.
    pub fn entries(&self) -> &BTreeMap<String, Vec<String>> {
        &self.entries
    }

    /// The value of data source `name` in `view`: at its first place that holds one.
    pub fn get<'a>(&self, view: &'a Json, name: &str) -> Option<&'a Json> {
        self.entries
            .get(name)?
            .iter()
            .filter_map(|pointer| lookup(view, pointer))
            .find(|value| !value.is_null())
    }

    /// The skill the mapped queue names, when it is a valid skill name.
    pub fn skill(&self, view: &Json) -> Option<String> {
        self.text(view, QUEUE)
            .and_then(|queue| crate::label(NameKind::Skill, &queue))
    }

    /// The agent the mapping names, when it is a valid agent id.
    pub fn agent(&self, view: &Json) -> Option<String> {
        self.text(view, AGENT)
            .and_then(|agent| crate::label(NameKind::Agent, &agent))
    }

    /// The text of data source `name` in `view` (see [`crate::text`]).
    pub fn text(&self, view: &Json, name: &str) -> Option<String> {
        self.get(view, name).and_then(crate::text)
    }

    /// Every data source found in `view`, by name.
    pub fn data(&self, view: &Json) -> Map<String, Json> {
        self.entries
            .keys()
            .filter_map(|name| Some((name.clone(), self.get(view, name)?.clone())))
            .collect()
    }
}

/// The value at `pointer` (RFC 6901: `/a/b`, `~1` for `/` and `~0` for `~` in a key, an
/// array index as a number). A key is matched exactly, else ignoring ASCII case, because
/// platforms spell the same field both ways (Amazon Connect's samples have `agentInfo`
/// and `AgentInfo`).
pub fn lookup<'a>(view: &'a Json, pointer: &str) -> Option<&'a Json> {
    let rest = pointer.strip_prefix('/')?;
    let mut at = view;
    for raw in rest.split('/') {
        let key = raw.replace("~1", "/").replace("~0", "~");
        at = match at {
            Json::Object(map) => match map.get(&key) {
                Some(value) => value,
                None => map.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key))?.1,
            },
            Json::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_escape_and_ignore_case_and_fall_back_in_order() {
        let view = json!({"detail": {"AgentInfo": {"AgentArn": "arn:a"}, "tags": {"aws:connect:x/y": "+1"}, "list": [1, 2]}});
        assert_eq!(
            lookup(&view, "/detail/agentInfo/agentArn"),
            Some(&json!("arn:a"))
        );
        assert_eq!(
            lookup(&view, "/detail/tags/aws:connect:x~1y"),
            Some(&json!("+1"))
        );
        assert_eq!(lookup(&view, "/detail/list/1"), Some(&json!(2)));
        assert_eq!(lookup(&view, "detail"), None);
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "CLID".to_owned(),
            Some(Sources::Many(vec![
                "/nope".into(),
                "/detail/tags/aws:connect:x~1y".into(),
            ])),
        );
        overrides.insert("Agent".to_owned(), None);
        let mapping = Mapping::new(
            &[
                ("Agent", &["/detail/agentInfo/agentArn"]),
                ("Queue", &["/q"]),
            ],
            &overrides,
        );
        assert_eq!(
            mapping.data(&view),
            json!({"CLID": "+1"}).as_object().unwrap().clone()
        );
    }
}
