//! The container (a ustar archive of `manifest.json`, `component.wasm`, `signature`),
//! signing and verification.

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _};
use serde::{Deserialize, Serialize};

use crate::{
    MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, Manifest, ManifestSource, PackageError, PublicKey,
    SIGNING_CONTEXT, SecretKey, TrustedKeys,
};

const MANIFEST: &str = "manifest.json";
const COMPONENT: &str = "component.wasm";
const SIGNATURE: &str = "signature";

/// The algorithm the signature record names: the only one this host knows.
const ED25519: &str = "ed25519";

/// `signature`: who signed, with which key, and the signature itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    /// `ed25519`.
    pub algorithm: String,
    /// The vendor the signer signed as (the manifest's).
    pub vendor: String,
    /// The public key that verifies the signature.
    pub key: PublicKey,
    /// The 64-byte signature over [`SIGNING_CONTEXT`] and `manifest.json`, base64.
    pub signature: String,
}

/// Whether `bytes` look like a package rather than a component: a ustar archive (a
/// component starts `\0asm`).
pub fn is_package(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

/// A package taken apart, not yet verified.
#[derive(Debug, Clone)]
pub struct Package {
    /// `manifest.json` exactly as signed.
    pub manifest_bytes: Vec<u8>,
    pub component: Vec<u8>,
    pub signature: SignatureRecord,
}

/// A package whose signature verified under a trusted key and whose component is the one
/// its manifest pins.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// `manifest.json` exactly as signed (to keep beside the installed applet).
    pub manifest_bytes: Vec<u8>,
    pub component: Vec<u8>,
    /// The trusted key that signed it (its vendor is the manifest's).
    pub key: PublicKey,
    /// The signature, base64.
    pub signature: String,
}

fn message(manifest: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + manifest.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(manifest);
    message
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    bytes: &[u8],
) -> Result<(), PackageError> {
    // A fixed header (no owner, time or mode of the vendor's machine): the same inputs make
    // the same package.
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    builder
        .append_data(&mut header, name, bytes)
        .map_err(|e| PackageError::Malformed(format!("cannot write {name}: {e}")))
}

impl Package {
    /// Signs `source` for `component` with `key` and returns the package's bytes. The
    /// manifest's vendor is the one the signature records.
    pub fn build(
        source: ManifestSource,
        component: &[u8],
        key: &SecretKey,
    ) -> Result<Vec<u8>, PackageError> {
        source.check()?;
        let manifest = source.pin(component);
        let manifest_bytes = manifest.to_bytes();
        let signature = key.signing().sign(&message(&manifest_bytes));
        let record = SignatureRecord {
            algorithm: ED25519.into(),
            vendor: manifest.vendor.clone(),
            key: key.public(),
            signature: STANDARD.encode(signature.to_bytes()),
        };
        let mut record_bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| PackageError::Malformed(format!("cannot write the signature: {e}")))?;
        record_bytes.push(b'\n');
        let mut builder = tar::Builder::new(Vec::new());
        append(&mut builder, MANIFEST, &manifest_bytes)?;
        append(&mut builder, COMPONENT, component)?;
        append(&mut builder, SIGNATURE, &record_bytes)?;
        builder
            .into_inner()
            .map_err(|e| PackageError::Malformed(format!("cannot finish the archive: {e}")))
    }

    /// Takes a package apart, reading at most `max_component` bytes of component. Every
    /// entry's size is checked before it is read; an entry that is not one of the three
    /// regular files, or comes twice, is refused.
    pub fn read(bytes: &[u8], max_component: u64) -> Result<Package, PackageError> {
        if !is_package(bytes) {
            return Err(PackageError::Malformed(
                "not a package (a ustar archive of manifest.json, component.wasm and signature)"
                    .into(),
            ));
        }
        let malformed = |e: std::io::Error| PackageError::Malformed(format!("{e}"));
        let mut archive = tar::Archive::new(bytes);
        let (mut manifest, mut component, mut signature) = (None, None, None);
        for entry in archive.entries().map_err(malformed)? {
            let mut entry = entry.map_err(malformed)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let (slot, entry_name, limit) = match name.as_str() {
                MANIFEST => (&mut manifest, MANIFEST, MAX_MANIFEST_BYTES),
                COMPONENT => (&mut component, COMPONENT, max_component),
                SIGNATURE => (&mut signature, SIGNATURE, MAX_SIGNATURE_BYTES),
                _ => {
                    return Err(PackageError::Malformed(format!(
                        "unknown entry {:?}: a package holds manifest.json, component.wasm and signature only",
                        name.chars().take(100).collect::<String>()
                    )));
                }
            };
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(PackageError::Malformed(format!(
                    "{entry_name} is not a regular file"
                )));
            }
            if slot.is_some() {
                return Err(PackageError::Malformed(format!("{entry_name} comes twice")));
            }
            let size = entry.size();
            if size > limit {
                return Err(PackageError::TooLarge {
                    entry: entry_name,
                    size,
                    limit,
                });
            }
            // The size is bounded above, and the archive is in memory: `take` makes sure of
            // it whatever the header claimed.
            let mut contents = Vec::with_capacity(size as usize);
            (&mut entry)
                .take(limit + 1)
                .read_to_end(&mut contents)
                .map_err(malformed)?;
            if contents.len() as u64 != size {
                return Err(PackageError::Malformed(format!(
                    "{entry_name} is cut short: {} of {size} bytes",
                    contents.len()
                )));
            }
            *slot = Some(contents);
        }
        let missing = |name: &str| PackageError::Malformed(format!("{name} is missing"));
        let signature = signature.ok_or_else(|| missing(SIGNATURE))?;
        let mut de = serde_json::Deserializer::from_slice(&signature);
        let signature: SignatureRecord =
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                PackageError::Malformed(format!(
                    "the signature record, at `{}`: {}",
                    e.path(),
                    e.inner()
                ))
            })?;
        Ok(Package {
            manifest_bytes: manifest.ok_or_else(|| missing(MANIFEST))?,
            component: component.ok_or_else(|| missing(COMPONENT))?,
            signature,
        })
    }

    /// Verifies the package against the keys an operator trusts: the signing key is
    /// trusted, the signature over the manifest's bytes verifies, the manifest is valid and
    /// its vendor is the one the key is trusted for, and the component is the one it pins.
    pub fn verify(self, trusted: &TrustedKeys) -> Result<Verified, PackageError> {
        let record = &self.signature;
        let key = record.key;
        let Some(trusted_vendor) = trusted.vendor_of(&key) else {
            return Err(PackageError::UnknownSigner {
                vendor: record.vendor.clone(),
                key: key.to_string(),
            });
        };
        if record.algorithm != ED25519 {
            return Err(PackageError::Malformed(format!(
                "the signature's algorithm is {:?}; this host verifies ed25519 only",
                record.algorithm
            )));
        }
        let bad = || PackageError::BadSignature {
            vendor: record.vendor.clone(),
            key: key.to_string(),
        };
        let signature = STANDARD
            .decode(record.signature.trim())
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(bad)?;
        key.verifying()
            .verify_strict(&message(&self.manifest_bytes), &signature)
            .map_err(|_| bad())?;
        // Signed by a trusted key: what it signed is now worth reading.
        let manifest = Manifest::parse(&self.manifest_bytes)?;
        for claimed in [&manifest.vendor, &record.vendor] {
            if claimed != trusted_vendor {
                return Err(PackageError::VendorMismatch {
                    key: key.to_string(),
                    trusted: trusted_vendor.to_owned(),
                    claimed: claimed.clone(),
                });
            }
        }
        let actual = crate::sha256_hex(&self.component);
        let actual_size = self.component.len() as u64;
        if actual != manifest.component.sha256.to_ascii_lowercase()
            || actual_size != manifest.component.size
        {
            return Err(PackageError::ComponentTampered {
                expected: manifest.component.sha256.clone(),
                expected_size: manifest.component.size,
                actual,
                actual_size,
            });
        }
        Ok(Verified {
            manifest,
            manifest_bytes: self.manifest_bytes,
            component: self.component,
            key,
            signature: record.signature.clone(),
        })
    }
}
