//! Vendor keys: a private key as PKCS#8 PEM (what `coda applet keygen` writes), a public key
//! as the text `ed25519:BASE64` (what operators paste into their configuration), and the
//! operator's list of trusted keys, each trusted for one vendor.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const PREFIX: &str = "ed25519:";

/// An Ed25519 public key, written `ed25519:` and the 32 bytes in standard base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub(crate) VerifyingKey);

impl PublicKey {
    pub(crate) fn verifying(&self) -> &VerifyingKey {
        &self.0
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some(encoded) = text.strip_prefix(PREFIX) else {
            return Err(format!(
                "a public key is written `ed25519:` and 44 characters of base64 (as `coda applet keygen` prints it), not {:?}",
                text.chars().take(60).collect::<String>()
            ));
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the key after `ed25519:` is not base64: {e}"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("an Ed25519 public key is 32 bytes; this one is {}", b.len())
        })?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| "the bytes are not an Ed25519 public key".to_owned())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A vendor's private signing key. Never printed: its `Debug` shows the public key only.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, String> {
        // The seed is wiped when dropped, as the dalek crate wipes its own keys.
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| format!("the system's random source failed: {e}"))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(text: &str) -> Result<SecretKey, String> {
        SigningKey::from_pkcs8_pem(text.trim())
            .map(SecretKey)
            .map_err(|e| format!("not an Ed25519 private key in PKCS#8 PEM: {e}"))
    }

    /// The key as PKCS#8 PEM, for a file only its owner reads.
    pub fn to_pem(&self) -> Result<String, String> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            .map_err(|e| format!("cannot encode the key: {e}"))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn signing(&self) -> &SigningKey {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

/// One entry of the operator's `trusted_vendors`: a vendor and a key it signs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedVendor {
    pub vendor: String,
    pub key: PublicKey,
}

/// The keys an operator trusts, each for one vendor (a vendor may have several keys, to
/// rotate them). Empty: every package is refused as from an unknown signer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    /// By the key's text, to its vendor.
    by_key: BTreeMap<String, (String, PublicKey)>,
}

impl TrustedKeys {
    /// Checks the entries: each vendor a valid name, no key trusted for two vendors.
    pub fn new(entries: impl IntoIterator<Item = TrustedVendor>) -> Result<TrustedKeys, String> {
        let mut by_key = BTreeMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            if !coda_types::names::is_valid_name(&entry.vendor) {
                return Err(format!(
                    "at `[{index}].vendor`: {:?} is not a vendor name (1 to {} of a-z 0-9 . _ -, \
                     starting with a letter or digit)",
                    entry.vendor,
                    coda_types::names::MAX_NAME_LEN
                ));
            }
            let text = entry.key.to_string();
            if let Some((vendor, _)) = by_key.get(&text)
                && *vendor != entry.vendor
            {
                return Err(format!(
                    "at `[{index}].key`: the key {text} is trusted for both `{vendor}` and `{}`: \
                     a key belongs to one vendor",
                    entry.vendor
                ));
            }
            by_key.insert(text, (entry.vendor, entry.key));
        }
        Ok(TrustedKeys { by_key })
    }

    /// A file of trusted keys (YAML or JSON): a list of `{vendor, key}`, or a mapping whose
    /// `trusted_vendors` is that list (a `coda serve` config file; its other fields are not
    /// read here). Errors name the entry and the field.
    pub fn parse(text: &str) -> Result<TrustedKeys, String> {
        let value: serde_yaml_ng::Value =
            coda_types::yaml::from_str(text).map_err(|e| match e {
                coda_types::yaml::Error::Refused(refused) => format!("the file {refused}"),
                e => format!("not YAML or JSON: {e}"),
            })?;
        let (list, prefix) = match value {
            serde_yaml_ng::Value::Mapping(mut map) => (
                map.remove("trusted_vendors")
                    .ok_or("no `trusted_vendors` list in it")?,
                "trusted_vendors",
            ),
            list => (list, ""),
        };
        let entries: Vec<TrustedVendor> = serde_path_to_error::deserialize(list).map_err(|e| {
            let path = e.path().to_string();
            format!(
                "at `{prefix}{}`: {}",
                if path == "." { String::new() } else { path },
                e.into_inner()
            )
        })?;
        TrustedKeys::new(entries).map_err(|e| e.replacen("at `", &format!("at `{prefix}"), 1))
    }

    /// The vendor `key` is trusted for.
    pub fn vendor_of(&self, key: &PublicKey) -> Option<&str> {
        self.by_key
            .get(&key.to_string())
            .map(|(vendor, _)| vendor.as_str())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every trusted key with its vendor, by key.
    pub fn entries(&self) -> impl Iterator<Item = TrustedVendor> + '_ {
        self.by_key.values().map(|(vendor, key)| TrustedVendor {
            vendor: vendor.clone(),
            key: *key,
        })
    }
}
