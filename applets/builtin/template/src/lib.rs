//! `coda-template`: what the built-in applets that talk to the outside world share.
//!
//! - [`Templates`]: one template engine (MiniJinja) over a run's data sources and the
//!   secrets a node asked for, so that a URL, a header, an email subject or an SMS body is
//!   written the same way in every applet.
//! - [`host_failure`]: a refused capability call as the step's [`Failure`], with the
//!   capability named in the message.
//! - [`retry_after`] and [`header`]: reading an HTTP response's headers.
//!
//! Everything here but [`Templates::from_run`] and [`fetch_secrets`] is pure (no host
//! call), so `cargo test -p coda-template` runs natively.

mod http;
mod template;

pub use http::{MAX_RETRY_AFTER, header, retry_after};
pub use template::{Mode, Templates, init};

use coda_sdk::{Context, Failure, HostError, secrets};

/// A refused or failed capability call as the step's failure. The code is the host error's
/// kind, so a flow can route on it; only `unavailable` is worth retrying (the downstream may
/// come back), the others will fail the same way next time.
pub fn host_failure(capability: &str, error: HostError) -> Failure {
    match error {
        HostError::NotGranted(m) => Failure::new("not-granted", format!("{capability}: {m}")),
        HostError::LimitExceeded(m) => Failure::new("limit-exceeded", format!("{capability}: {m}")),
        HostError::Invalid(m) => Failure::new("invalid", format!("{capability}: {m}")),
        HostError::Unavailable(m) => {
            Failure::retryable("unavailable", format!("{capability}: {m}"), None)
        }
        HostError::Rejected(m) => Failure::new("rejected", format!("{capability}: {m}")),
    }
}

/// Fetches the secrets a node names (`alias -> secret name`) through the secrets capability,
/// keyed by alias: what templates see as `secrets.<alias>`. A secret's value never appears
/// in a failure message, only its alias and name.
pub fn fetch_secrets<'a>(
    names: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<(String, String)>, Failure> {
    names
        .into_iter()
        .map(|(alias, name)| {
            secrets::get(name)
                .map(|value| (alias.clone(), value))
                .map_err(|e| host_failure(&format!("secret `{name}` (alias `{alias}`)"), e))
        })
        .collect()
}

impl Templates {
    /// The engine over this run's data sources and the given secrets.
    pub fn from_run(cx: &Context, secrets: Vec<(String, String)>) -> Self {
        Templates::new(cx.all_data(), secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_is_retryable() {
        let cases = [
            (HostError::NotGranted("no".into()), "not-granted", false),
            (
                HostError::LimitExceeded("no".into()),
                "limit-exceeded",
                false,
            ),
            (HostError::Invalid("no".into()), "invalid", false),
            (HostError::Unavailable("no".into()), "unavailable", true),
            (HostError::Rejected("no".into()), "rejected", false),
        ];
        for (error, code, retryable) in cases {
            let failure = host_failure("http", error);
            assert_eq!(failure.code, code);
            assert_eq!(failure.retryable, retryable, "{code}");
            assert_eq!(failure.message, "http: no");
            assert_eq!(failure.retry_after_millis, None);
        }
    }
}
