//! `coda-package`: vendor packages of applets.
//!
//! A **package** (`NAME-VERSION.codapkg`) is a ustar archive of exactly three files:
//!
//! - `manifest.json`: what the vendor says about the applet ([`Manifest`]: name, version,
//!   vendor, description, the capabilities it needs and why) and the SHA-256 and size of
//!   the component;
//! - `component.wasm`: the component;
//! - `signature`: which key signed ([`SignatureRecord`]: vendor, `ed25519:BASE64` public
//!   key) and the Ed25519 signature over [`SIGNING_CONTEXT`] followed by the exact bytes of
//!   `manifest.json`.
//!
//! One signature covers both: the manifest bytes are signed as they are (never
//! re-serialized before checking), and the manifest pins the component by digest.
//!
//! A package is untrusted input: it is read from memory, every entry's size is checked
//! against its bound before it is read, unknown, duplicate and non-file entries are
//! refused, and nothing is ever written to disk by path. [`Package::read`] takes it apart;
//! [`Package::verify`] checks it against the operator's [`TrustedKeys`];
//! [`Manifest::check_component`] checks what the component itself says (its `describe` and
//! its imports) against the manifest. This crate has no wasmtime: the caller loads the
//! component and hands over what it found.
//!
//! **Architecture Invariant:** a package is verified only against the exact bytes it
//! carries, with `verify_strict` (no malleable signatures, no weak keys), and only a key an
//! operator trusts, for the vendor it was trusted for, can make one verify.

mod keys;
mod manifest;
mod package;

pub use keys::{PublicKey, SecretKey, TrustedKeys, TrustedVendor};
pub use manifest::{ComponentRef, Manifest, ManifestError, ManifestSource, Need};
pub use package::{Package, SignatureRecord, Verified, is_package};

use coda_types::Capability;

/// What an Ed25519 signature of a package signs, before the manifest's bytes: a signature
/// made by the same key for anything else never verifies as a package's.
pub const SIGNING_CONTEXT: &[u8] = b"coda-package-v1\n";

/// The Content-Type a package is uploaded with (`POST /v1/applets`).
pub const CONTENT_TYPE: &str = "application/vnd.coda.package";

/// The file name extension of a package.
pub const EXTENSION: &str = "codapkg";

/// The largest `manifest.json` read.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// The largest `signature` read.
pub const MAX_SIGNATURE_BYTES: u64 = 4 * 1024;

/// What a package adds to its component at most: the manifest, the signature, three
/// headers with their padding and the archive's end. A service taking components of N bytes
/// takes packages of N + this.
pub const MAX_OVERHEAD: u64 = MAX_MANIFEST_BYTES + MAX_SIGNATURE_BYTES + 8 * 1024;

/// The longest description and the longest reason for a capability, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
pub const MAX_WHY_BYTES: usize = 1024;

/// Why a package is refused. [`PackageError::kind`] is the stable name for programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// Not a package this host can read: no archive, a missing, unknown or duplicate
    /// entry, a signature record that does not parse.
    #[error("the package is malformed: {0}")]
    Malformed(String),
    /// An entry is larger than its bound (the component: the caller's limit).
    #[error("the package's {entry} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        entry: &'static str,
        size: u64,
        limit: u64,
    },
    /// The manifest does not parse or breaks a rule; names the field.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Signed by a key no operator trusts here.
    #[error(
        "the package is signed by vendor `{vendor}` with key {key}, which this service does not trust: \
         an operator must add the key to `trusted_vendors`"
    )]
    UnknownSigner { vendor: String, key: String },
    /// Signed by a trusted key, but in another vendor's name.
    #[error(
        "the package says it is from vendor `{claimed}`, but its key {key} is trusted for vendor `{trusted}` only"
    )]
    VendorMismatch {
        key: String,
        trusted: String,
        claimed: String,
    },
    /// The signature does not verify: the manifest (or the signature) was changed after
    /// signing.
    #[error(
        "the signature of vendor `{vendor}` (key {key}) does not verify: the manifest was changed after it was signed"
    )]
    BadSignature { vendor: String, key: String },
    /// The component is not the one the signed manifest names.
    #[error(
        "the component does not match the signed manifest (SHA-256 {actual}, {actual_size} bytes; signed: {expected}, {expected_size} bytes): it was changed after signing"
    )]
    ComponentTampered {
        expected: String,
        expected_size: u64,
        actual: String,
        actual_size: u64,
    },
    /// The component's `describe` answers another name or version than the manifest.
    #[error(
        "the manifest's {field} is `{manifest}` but the component describes itself as `{component}`"
    )]
    Mismatch {
        field: &'static str,
        manifest: String,
        component: String,
    },
    /// The component imports, or its `describe` declares, capabilities the manifest does
    /// not declare.
    #[error("{}", undeclared_message(.0))]
    Undeclared(Vec<Undeclared>),
}

impl PackageError {
    /// The stable name of the refusal, as the API's error `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            PackageError::Malformed(_)
            | PackageError::TooLarge { .. }
            | PackageError::Manifest(_)
            | PackageError::Mismatch { .. } => "package-invalid",
            PackageError::UnknownSigner { .. } | PackageError::VendorMismatch { .. } => {
                "package-untrusted-signer"
            }
            PackageError::BadSignature { .. } => "package-bad-signature",
            PackageError::ComponentTampered { .. } => "package-tampered",
            PackageError::Undeclared(_) => "package-undeclared-capability",
        }
    }
}

/// A capability the component needs that the manifest does not declare, and how it was
/// found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undeclared {
    pub capability: Capability,
    /// True: the component imports its interface; false: its `describe` declares it.
    pub imported: bool,
}

fn undeclared_message(undeclared: &[Undeclared]) -> String {
    let list = |imported: bool| {
        let names: Vec<&str> = undeclared
            .iter()
            .filter(|u| u.imported == imported)
            .map(|u| u.capability.name())
            .collect();
        names.join(", ")
    };
    let mut parts = Vec::new();
    let imported = list(true);
    if !imported.is_empty() {
        parts.push(format!("the component imports {imported}"));
    }
    let described = list(false);
    if !described.is_empty() {
        parts.push(format!("its describe declares {described}"));
    }
    format!(
        "{}, which the manifest's `capabilities` do not declare: a vendor package must say \
         what each capability it uses is for",
        parts.join(" and ")
    )
}

/// SHA-256 of `bytes`, hex: the component digest the manifest records (and the runtime's).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
