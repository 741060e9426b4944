//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, its spec's
//! "Signature scheme"): a secret is `whsec_` and base64 of random bytes; a message is
//! signed as HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the
//! secret's decoded bytes, and sent as `v1,{base64 of the MAC}`. While a rotation's window
//! lasts the message carries one signature per valid secret, space-separated, and a
//! receiver accepts it if any verifies.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of every secret, as the Standard Webhooks libraries expect it.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret: 24, as the reference implementations make them (the spec
/// asks for 24 to 64).
pub const SECRET_BYTES: usize = 24;

/// A new secret: `whsec_` and base64 of [`SECRET_BYTES`] random bytes.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
}

/// The key a secret stands for: its base64 decoded, after the prefix.
fn key_of(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    BASE64
        .decode(encoded)
        .map_err(|e| format!("a webhook secret is not base64 after {SECRET_PREFIX}: {e}"))
}

/// One `v1,` signature of the message `id`, `timestamp` (seconds since the epoch), `body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = key_of(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| format!("a webhook secret is not an HMAC key: {e}"))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header's value: a signature per secret, space-separated.
pub fn signature_header(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let signatures = secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its libraries' tests.
    #[test]
    fn the_specifications_example_signs_as_published() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_are_prefixed_base64_of_their_bytes_and_differ() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(key_of(&a).unwrap().len(), SECRET_BYTES);
        assert!(a.starts_with(SECRET_PREFIX));
    }

    #[test]
    fn a_rotation_signs_with_each_secret() {
        let secrets = [new_secret().unwrap(), new_secret().unwrap()];
        let header = signature_header(&secrets, "msg_1", 1, b"{}").unwrap();
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(&secrets[0], "msg_1", 1, b"{}").unwrap());
        assert_eq!(parts[1], sign(&secrets[1], "msg_1", 1, b"{}").unwrap());
    }
}
