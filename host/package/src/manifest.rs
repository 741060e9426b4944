//! The manifest: what a vendor says about its applet. The vendor writes a
//! [`ManifestSource`] (YAML or JSON); `coda applet package` adds the component's digest and
//! size and writes it into the package as `manifest.json`, the bytes the signature covers.

use coda_types::Capability;
use serde::{Deserialize, Serialize};

use crate::{MAX_DESCRIPTION_BYTES, MAX_MANIFEST_BYTES, MAX_WHY_BYTES, PackageError, Undeclared};

/// The manifest format this host writes and reads.
pub const FORMAT: u32 = 1;

/// A manifest that does not parse or breaks a rule: the field, then what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the manifest is invalid: at `{field}`: {message}")]
pub struct ManifestError {
    /// The field's path (`capabilities[1].why`), or `.` for the whole manifest.
    pub field: String,
    pub message: String,
}

impl ManifestError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A capability the applet needs, and what for: shown to the tenant who installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Need {
    /// One of the WIT enum's: http, email, sql, secrets, interactions.
    pub name: Capability,
    /// Why the applet needs it, in a sentence.
    pub why: String,
}

/// What the vendor writes (`MANIFEST.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSource {
    pub name: String,
    pub version: String,
    pub vendor: String,
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<Need>,
}

/// The component a manifest pins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentRef {
    /// SHA-256 of `component.wasm`, hex.
    pub sha256: String,
    pub size: u64,
}

/// The signed manifest (`manifest.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    pub name: String,
    pub version: String,
    pub vendor: String,
    pub description: String,
    pub capabilities: Vec<Need>,
    pub component: ComponentRef,
}

fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> ManifestError {
    let path = e.path().to_string();
    // YAML's errors already begin with the path; said once is enough.
    let message = e.into_inner().to_string();
    let message = message
        .strip_prefix(&format!("{path}: "))
        .map(str::to_owned)
        .unwrap_or(message);
    ManifestError::new(path, message)
}

impl ManifestSource {
    /// Parses what a vendor wrote (YAML, or JSON) and checks its rules.
    pub fn parse(text: &str) -> Result<ManifestSource, ManifestError> {
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::new(
                ".",
                format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        let de = coda_types::yaml::deserializer(text)
            .map_err(|e| ManifestError::new(".", format!("the manifest {e}")))?;
        let source: ManifestSource = serde_path_to_error::deserialize(de).map_err(field_error)?;
        source.check()?;
        Ok(source)
    }

    /// The rules every manifest keeps, beyond its types.
    pub fn check(&self) -> Result<(), ManifestError> {
        use coda_types::names;
        if !names::is_valid_name(&self.name) {
            return Err(ManifestError::new(
                "name",
                format!(
                    "{:?} is not an applet name (1 to {} of a-z 0-9 . _ -, starting with a letter or digit)",
                    self.name,
                    names::MAX_NAME_LEN
                ),
            ));
        }
        if !names::is_exact_version(&self.version) {
            return Err(ManifestError::new(
                "version",
                format!(
                    "{:?} is not an exact semantic version (MAJOR.MINOR.PATCH)",
                    self.version
                ),
            ));
        }
        if !names::is_valid_name(&self.vendor) {
            return Err(ManifestError::new(
                "vendor",
                format!(
                    "{:?} is not a vendor name (1 to {} of a-z 0-9 . _ -, starting with a letter or digit)",
                    self.vendor,
                    names::MAX_NAME_LEN
                ),
            ));
        }
        if self.description.trim().is_empty() {
            return Err(ManifestError::new(
                "description",
                "say what the applet does",
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(ManifestError::new(
                "description",
                format!("longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        let mut seen = Vec::new();
        for (index, need) in self.capabilities.iter().enumerate() {
            if seen.contains(&need.name) {
                return Err(ManifestError::new(
                    format!("capabilities[{index}].name"),
                    format!("`{}` is declared twice", need.name),
                ));
            }
            seen.push(need.name);
            if need.why.trim().is_empty() {
                return Err(ManifestError::new(
                    format!("capabilities[{index}].why"),
                    format!(
                        "say why the applet needs `{}`: the tenant reads it before granting",
                        need.name
                    ),
                ));
            }
            if need.why.len() > MAX_WHY_BYTES {
                return Err(ManifestError::new(
                    format!("capabilities[{index}].why"),
                    format!("longer than {MAX_WHY_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }

    /// The manifest to sign, pinning `component`.
    pub fn pin(self, component: &[u8]) -> Manifest {
        Manifest {
            format: FORMAT,
            name: self.name,
            version: self.version,
            vendor: self.vendor,
            description: self.description,
            capabilities: self.capabilities,
            component: ComponentRef {
                sha256: crate::sha256_hex(component),
                size: component.len() as u64,
            },
        }
    }
}

impl Manifest {
    /// Parses `manifest.json` as signed and checks its rules.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let manifest: Manifest = serde_path_to_error::deserialize(&mut de).map_err(field_error)?;
        de.end()
            .map_err(|e| ManifestError::new(".", format!("text after the manifest: {e}")))?;
        if manifest.format != FORMAT {
            return Err(ManifestError::new(
                "format",
                format!(
                    "format {} is not one this host reads (it reads {FORMAT})",
                    manifest.format
                ),
            ));
        }
        let sha = &manifest.component.sha256;
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ManifestError::new(
                "component.sha256",
                "not a SHA-256 in hex (64 digits)",
            ));
        }
        manifest.source().check()?;
        Ok(manifest)
    }

    /// The bytes to sign and to store in the package.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// What the vendor wrote, without the pinned component.
    pub fn source(&self) -> ManifestSource {
        ManifestSource {
            name: self.name.clone(),
            version: self.version.clone(),
            vendor: self.vendor.clone(),
            description: self.description.clone(),
            capabilities: self.capabilities.clone(),
        }
    }

    /// Whether the manifest declares `capability`.
    pub fn declares(&self, capability: Capability) -> bool {
        self.capabilities.iter().any(|n| n.name == capability)
    }

    /// Checks what the component says against the manifest: `describe`'s name and version
    /// (`name`, `version`) are the manifest's, and every capability it imports (`imports`:
    /// the coda interfaces, as the runtime lists them) or declares in `describe`
    /// (`described`) is declared here. `data`, `state` and `log` need no declaration.
    pub fn check_component(
        &self,
        name: &str,
        version: &str,
        described: &[Capability],
        imports: &[String],
    ) -> Result<(), PackageError> {
        for (field, manifest, component) in [
            ("name", &self.name, name),
            ("version", &self.version, version),
        ] {
            if manifest != component {
                return Err(PackageError::Mismatch {
                    field,
                    manifest: manifest.clone(),
                    component: component.to_owned(),
                });
            }
        }
        let mut undeclared = Vec::new();
        for capability in Capability::ALL {
            if self.declares(capability) {
                continue;
            }
            if imports.iter().any(|i| i == capability.name()) {
                undeclared.push(Undeclared {
                    capability,
                    imported: true,
                });
            } else if described.contains(&capability) {
                undeclared.push(Undeclared {
                    capability,
                    imported: false,
                });
            }
        }
        if undeclared.is_empty() {
            Ok(())
        } else {
            Err(PackageError::Undeclared(undeclared))
        }
    }
}
