//! A tenant's connection: which platform sends, how its deliveries are authenticated (the
//! name of the tenant secret holding the auth token or header value), the live plan an
//! interaction starts under, and how the platform's attributes map to data sources.
//! Stored by the server as this struct's JSON; checked whole before it is stored.

use std::collections::BTreeMap;

use coda_store::Channel;
use coda_types::names::{NameKind, check_name};
use serde::{Deserialize, Serialize};

use crate::IntakeError;

/// The platforms, by the name their delivery path carries (`/v1/intake/{adapter}/…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// Twilio TaskRouter event callbacks, signed with `X-Twilio-Signature`.
    Twilio,
    /// Amazon Connect contact events through an EventBridge API destination.
    AmazonConnect,
    /// Genesys Cloud conversation detail events (EventBridge or a webhook).
    Genesys,
    /// CloudEvents 1.0, structured JSON.
    Cloudevents,
}

impl AdapterKind {
    pub const ALL: [AdapterKind; 4] = [
        AdapterKind::Twilio,
        AdapterKind::AmazonConnect,
        AdapterKind::Genesys,
        AdapterKind::Cloudevents,
    ];

    /// The name in the delivery path and in a connection.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Twilio => "twilio",
            AdapterKind::AmazonConnect => "amazon-connect",
            AdapterKind::Genesys => "genesys",
            AdapterKind::Cloudevents => "cloudevents",
        }
    }

    pub fn from_name(name: &str) -> Option<AdapterKind> {
        AdapterKind::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// Whether deliveries carry the secret in a header the tenant names (every platform
    /// but Twilio, which signs).
    pub fn header_auth(self) -> bool {
        self != AdapterKind::Twilio
    }
}

/// One data source's places in the payload: a JSON pointer, or several tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sources {
    One(String),
    Many(Vec<String>),
}

impl Sources {
    pub fn pointers(&self) -> Vec<String> {
        match self {
            Sources::One(p) => vec![p.clone()],
            Sources::Many(ps) => ps.clone(),
        }
    }
}

/// The most data sources a mapping names, the most places per source, and the longest
/// pointer and header name.
pub const MAX_MAPPED: usize = 64;
pub const MAX_POINTERS: usize = 8;
pub const MAX_POINTER_LEN: usize = 256;
pub const MAX_HEADER_LEN: usize = 64;
pub const MAX_URL_LEN: usize = 2048;

/// The named event a wrap-up is delivered as when the connection names none: the event the
/// dispositions of a plan's `wait-for-event` are usually waited for by.
pub const DEFAULT_WRAPUP_EVENT: &str = "disposition";

/// A connection as the tenant writes it (`PUT /v1/intake/connections/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub adapter: AdapterKind,
    /// The tenant secret holding Twilio's auth token, or the header value the platform
    /// sends.
    pub secret: String,
    /// The header carrying the secret (every adapter but `twilio`): the API key name of
    /// an EventBridge connection, for example.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `twilio` only: the callback URL exactly as configured in the Workspace, which
    /// Twilio signs; without it the URL is rebuilt from the request (`Host`,
    /// `X-Forwarded-Proto`), right unless a proxy rewrites the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The live plan each interaction starts under: its post-interaction process runs when
    /// the interaction ends.
    pub plan: String,
    /// The channel when the payload names none coda knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The named event a wrap-up is delivered as ([`DEFAULT_WRAPUP_EVENT`] by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapup_event: Option<String>,
    /// Data source name to its places in the payload (JSON pointers, RFC 6901), over the
    /// adapter's defaults; `null` drops a default.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub mapping: BTreeMap<String, Option<Sources>>,
}

/// A mapping given as `null` is no mapping, as one left out is.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Option<Sources>>, D::Error> {
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

fn invalid(field: &str, why: impl Into<String>) -> IntakeError {
    IntakeError::invalid(field, why)
}

/// RFC 9110's token characters: what a header name may be made of.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HEADER_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers a proxy or the HTTP layer sets itself: a secret there could never arrive.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "x-twilio-signature",
];

impl ConnectionConfig {
    /// Checks every field, naming the first that is wrong.
    pub fn check(&self) -> Result<(), IntakeError> {
        check_name(NameKind::Secret, &self.secret).map_err(|e| invalid("secret", e.to_string()))?;
        check_name(NameKind::Plan, &self.plan).map_err(|e| invalid("plan", e.to_string()))?;
        match (&self.header, self.adapter.header_auth()) {
            (None, true) => {
                return Err(IntakeError::missing(
                    "header",
                    format!(
                        "a {} connection is authenticated by a header the platform sends: \
                         name it (the API key name of the EventBridge connection)",
                        self.adapter.as_str()
                    ),
                ));
            }
            (Some(_), false) => {
                return Err(invalid(
                    "header",
                    "a twilio connection is authenticated by X-Twilio-Signature, not a header",
                ));
            }
            (Some(header), true) => {
                if !is_header_name(header) {
                    return Err(invalid(
                        "header",
                        format!(
                            "`{header}` is not a header name: 1 to {MAX_HEADER_LEN} letters, \
                             digits and !#$%&'*+-.^_`|~"
                        ),
                    ));
                }
                if RESERVED_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
                    return Err(invalid(
                        "header",
                        format!("`{header}` is set by HTTP itself; name a header of your own"),
                    ));
                }
            }
            (None, false) => {}
        }
        if let Some(url) = &self.public_url {
            if self.adapter != AdapterKind::Twilio {
                return Err(invalid(
                    "public_url",
                    "only a twilio connection signs its URL",
                ));
            }
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > MAX_URL_LEN || url.chars().any(char::is_control) {
                return Err(invalid(
                    "public_url",
                    format!(
                        "an http:// or https:// URL of at most {MAX_URL_LEN} bytes, as the \
                         Workspace's Event Callback URL"
                    ),
                ));
            }
        }
        if let Some(event) = &self.wrapup_event {
            check_name(NameKind::Event, event)
                .map_err(|e| invalid("wrapup_event", e.to_string()))?;
        }
        if self.mapping.len() > MAX_MAPPED {
            return Err(invalid(
                "mapping",
                format!("at most {MAX_MAPPED} data sources"),
            ));
        }
        for (name, sources) in &self.mapping {
            let field = format!("mapping.{name}");
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(invalid(
                    &field,
                    "a data source name is 1 to 64 bytes, no control characters",
                ));
            }
            let pointers = sources.as_ref().map(Sources::pointers).unwrap_or_default();
            if sources.is_some() && (pointers.is_empty() || pointers.len() > MAX_POINTERS) {
                return Err(invalid(
                    &field,
                    format!("1 to {MAX_POINTERS} places, or null to drop the default"),
                ));
            }
            for pointer in &pointers {
                if !pointer.starts_with('/') || pointer.len() > MAX_POINTER_LEN {
                    return Err(invalid(
                        &field,
                        format!(
                            "`{pointer}` is not a JSON pointer: `/` and the keys down to the \
                             value (`/detail/queueInfo/queueArn`), at most {MAX_POINTER_LEN} \
                             bytes"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The named event a wrap-up is delivered as.
    pub fn wrapup_event(&self) -> &str {
        self.wrapup_event.as_deref().unwrap_or(DEFAULT_WRAPUP_EVENT)
    }

    /// The channel when the payload names none coda knows.
    pub fn default_channel(&self, otherwise: Channel) -> Channel {
        self.channel.unwrap_or(otherwise)
    }

    /// The connection's mapping: the adapter's defaults with the tenant's entries over them.
    pub fn mapping(&self) -> crate::Mapping {
        crate::Mapping::new(crate::mapping::defaults(self.adapter), &self.mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Result<ConnectionConfig, String> {
        let config: ConnectionConfig = serde_json::from_value(json).map_err(|e| e.to_string())?;
        config.check().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn each_adapter_says_how_it_is_authenticated() {
        assert!(
            config(serde_json::json!({"adapter": "twilio", "secret": "tw", "plan": "live"}))
                .is_ok()
        );
        let refused =
            config(serde_json::json!({"adapter": "amazon-connect", "secret": "k", "plan": "live"}))
                .unwrap_err();
        assert!(refused.contains("`header` is missing"), "{refused}");
        let refused = config(serde_json::json!({"adapter": "twilio", "secret": "tw", "plan": "live", "header": "x-key"}))
            .unwrap_err();
        assert!(refused.contains("X-Twilio-Signature"), "{refused}");
        let refused = config(serde_json::json!({"adapter": "genesys", "secret": "k", "plan": "live", "header": "Host"}))
            .unwrap_err();
        assert!(refused.contains("set by HTTP itself"), "{refused}");
    }

    #[test]
    fn a_mapping_names_json_pointers() {
        let refused = config(
            serde_json::json!({"adapter": "cloudevents", "secret": "k", "plan": "live",
            "header": "x-key", "mapping": {"CLID": "data.clid"}}),
        )
        .unwrap_err();
        assert!(
            refused.contains("`mapping.CLID`") && refused.contains("JSON pointer"),
            "{refused}"
        );
        assert!(
            config(
                serde_json::json!({"adapter": "cloudevents", "secret": "k", "plan": "live",
            "header": "x-key", "mapping": {"CLID": ["/data/clid", "/data/from"], "Language": null}})
            )
            .is_ok()
        );
        let refused = config(
            serde_json::json!({"adapter": "twilio", "secret": "k", "plan": "live", "extra": 1}),
        )
        .unwrap_err();
        assert!(refused.contains("unknown field `extra`"), "{refused}");
    }
}
