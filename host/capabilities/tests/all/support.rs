//! Helpers shared by the tests.

use std::sync::Arc;

use coda_capabilities::{HostCapabilities, Settings};
use coda_types::capabilities::Capabilities;
use coda_types::{HostError, InvocationContext};

pub const KEY: &str = "run-7/3/1";

pub fn cx() -> InvocationContext {
    InvocationContext {
        tenant: "acme".into(),
        interaction: Some("i-1".into()),
        run: "run-7".into(),
        plan: "post-call".into(),
        node: "notify".into(),
        idempotency_key: KEY.into(),
        attempt: 1,
        ..Default::default()
    }
}

pub fn host(yaml: &str) -> HostCapabilities {
    let settings = Settings::from_yaml_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    HostCapabilities::new(settings).unwrap()
}

pub fn applet(host: &HostCapabilities, tenant: &str, name: &str) -> Arc<dyn Capabilities> {
    host.for_applet(tenant, name, "1.0.0")
}

/// The message of an error of the expected kind; any other result fails the test.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    result: Result<T, HostError>,
    kind: fn(&HostError) -> Option<&String>,
    what: &str,
) -> String {
    match &result {
        Err(e) => match kind(e) {
            Some(message) => message.clone(),
            None => panic!("expected {what}, got {e:?}"),
        },
        Ok(v) => panic!("expected {what}, got {v:?}"),
    }
}

pub fn not_granted(e: &HostError) -> Option<&String> {
    match e {
        HostError::NotGranted(m) => Some(m),
        _ => None,
    }
}
pub fn invalid(e: &HostError) -> Option<&String> {
    match e {
        HostError::Invalid(m) => Some(m),
        _ => None,
    }
}
pub fn unavailable(e: &HostError) -> Option<&String> {
    match e {
        HostError::Unavailable(m) => Some(m),
        _ => None,
    }
}
pub fn limit(e: &HostError) -> Option<&String> {
    match e {
        HostError::LimitExceeded(m) => Some(m),
        _ => None,
    }
}
pub fn rejected(e: &HostError) -> Option<&String> {
    match e {
        HostError::Rejected(m) => Some(m),
        _ => None,
    }
}
