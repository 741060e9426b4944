//! Whether a delivery comes from the platform: Twilio's `X-Twilio-Signature` (HMAC-SHA1
//! over the URL and the sorted form parameters, keyed by the account's auth token), or the
//! header the tenant named holding the secret (an EventBridge API destination's API key),
//! compared in constant time. Checked before the payload is read for what it says.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::{AdapterKind, ConnectionConfig};

/// Why a delivery was not authenticated: for the log, never for the answer (which says
/// only "forbidden", so a prober learns nothing of the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no {0} header")]
    Missing(String),
    #[error("the {0} header does not match")]
    Mismatch(String),
    #[error("the delivery is not a form: {0}")]
    Unreadable(String),
}

/// A delivery as it arrived: the URL the platform called (for Twilio's signature), its
/// headers and its body.
pub struct Delivery<'a> {
    /// `scheme://host[:port]/path?query` as the platform called it.
    pub url: String,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: &'a [u8],
}

impl Delivery<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// The Twilio signature header.
pub const TWILIO_SIGNATURE: &str = "X-Twilio-Signature";

/// Authenticates `delivery` for `config`, whose secret's value is `secret`.
pub fn authenticate(
    config: &ConnectionConfig,
    secret: &str,
    delivery: &Delivery<'_>,
) -> Result<(), AuthError> {
    if config.adapter == AdapterKind::Twilio {
        let Some(given) = delivery.header(TWILIO_SIGNATURE) else {
            return Err(AuthError::Missing(TWILIO_SIGNATURE.into()));
        };
        let params =
            crate::limits::form(delivery.body).map_err(|e| AuthError::Unreadable(e.to_string()))?;
        let url = config.public_url.as_deref().unwrap_or(&delivery.url);
        return if twilio_url_variants(url)
            .iter()
            .any(|url| twilio_signature_matches(url, &params, secret, given))
        {
            Ok(())
        } else {
            Err(AuthError::Mismatch(TWILIO_SIGNATURE.into()))
        };
    }
    let name = config.header.as_deref().unwrap_or_default();
    let Some(given) = delivery.header(name) else {
        return Err(AuthError::Missing(name.into()));
    };
    // Equal lengths are compared in constant time; a different length is a mismatch
    // whatever the bytes (the length of a secret is not worth hiding).
    if bool::from(given.ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Mismatch(name.into()))
    }
}

/// Twilio's signature of a form POST: the URL, then each parameter's name and value
/// appended, sorted by name (and a repeated name's values sorted too), HMAC-SHA1 keyed by
/// the auth token, in base64.
pub fn twilio_signature(url: &str, params: &[(String, String)], token: &str) -> String {
    let mac = twilio_mac(url, params, token);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// [`twilio_signature`] of a form body as posted: what Twilio sends for it (for tests and
/// load generators that play Twilio).
pub fn sign_twilio_form(url: &str, body: &[u8], token: &str) -> Result<String, crate::IntakeError> {
    Ok(twilio_signature(url, &crate::limits::form(body)?, token))
}

fn twilio_mac(url: &str, params: &[(String, String)], token: &str) -> Hmac<sha1::Sha1> {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // An HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Whether `given` (the header, base64) is the signature: compared in constant time by
/// the MAC itself.
fn twilio_signature_matches(
    url: &str,
    params: &[(String, String)],
    token: &str,
    given: &[u8],
) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given) else {
        return false;
    };
    twilio_mac(url, params, token).verify_slice(&given).is_ok()
}

/// The URL as signed, with and without its port: Twilio signs the URL as configured,
/// and a proxy may add or drop the port (Twilio's own validators try both).
fn twilio_url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    // A port is what follows the last `:` after any IPv6 literal's brackets.
    let host_end = host_port.rfind(']').map_or(0, |i| i + 1);
    match host_port[host_end..].rfind(':') {
        Some(colon) => {
            let host = &host_port[..host_end + colon];
            variants.push(format!("{scheme}://{userinfo}{host}{path}"));
        }
        None => {
            let port = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            variants.push(format!("{scheme}://{userinfo}{host_port}:{port}{path}"));
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known answers of Twilio's own validator tests (twilio-python,
    /// tests/unit/test_request_validator.py).
    fn twilio_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn twilio_signatures_match_twilios_known_answers() {
        assert_eq!(
            twilio_signature(URL, &twilio_params(), "12345"),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        let repeated: Vec<(String, String)> = [
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            twilio_signature(URL, &repeated, "12345"),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn a_port_added_or_dropped_still_verifies() {
        let params = twilio_params();
        let with_port = URL.replace(".com", ".com:1234");
        assert!(
            twilio_url_variants(&with_port)
                .iter()
                .any(|u| twilio_signature_matches(
                    u,
                    &params,
                    "12345",
                    b"RSOYDt4T1cUTdK1PDd93/VVr8B8="
                ))
        );
        assert!(
            twilio_url_variants(URL)
                .iter()
                .any(|u| twilio_signature_matches(
                    u,
                    &params,
                    "12345",
                    b"kvajT1Ptam85bY51eRf/AJRuM3w="
                ))
        );
        let http = URL.replace("https", "http");
        assert!(
            twilio_url_variants(&http)
                .iter()
                .any(|u| twilio_signature_matches(
                    u,
                    &params,
                    "12345",
                    b"0ZXoZLH/DfblKGATFgpif+LLRf4="
                ))
        );
        assert!(!twilio_signature_matches(
            URL,
            &params,
            "54321",
            b"RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
        assert!(!twilio_signature_matches(
            URL,
            &params,
            "12345",
            b"not base64!"
        ));
    }
}
