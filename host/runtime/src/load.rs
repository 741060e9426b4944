//! Loading a component: refused early with a reason, compiled once per digest (or loaded
//! from the artifact cache), linked, and described.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::preinit::{self, PreInit};
use crate::sandbox::{self, HostState};
use crate::world::{Pre, WorldVersion};
use crate::{InvokeError, LoadedApplet, Runtime, Values, cache, limits};

/// What a load may be given beyond the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Largest component accepted, checked before parsing or compiling.
    pub max_bytes: u64,
    /// Limits of the `describe` call made at load. A component whose instantiation alone
    /// exceeds them (a 1 GiB initial memory, say) is refused at load, under the limit's name.
    pub limits: limits::Limits,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            max_bytes: limits::DEFAULT_UPLOAD_BYTES,
            limits: limits::Limits::default(),
        }
    }
}

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("component of {size} bytes is larger than the upload limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("invalid component: {0}")]
    InvalidComponent(String),
    #[error(
        "the component imports `{name}`, which this host does not provide (it provides wasi:*@0.2.x and coda:applet/*@0.1.x or @0.2.x)"
    )]
    UnknownImport { name: String },
    #[error(
        "compiling the component took longer than the compile limit of {millis} ms (the operator's `--compile-timeout-ms`)"
    )]
    CompileTimeout { millis: u128 },
    #[error("the component's `wizer-initialize` failed: {0}")]
    Init(InvokeError),
    #[error(
        "the pre-initialized component is {size} bytes, more than the {limit} bytes a snapshot may be (its init filled too much memory)"
    )]
    SnapshotTooLarge { size: u64, limit: u64 },
    #[error("the component's describe failed: {0}")]
    Describe(InvokeError),
    #[error("the component's describe returned an invalid answer: {0}")]
    InvalidInfo(String),
    #[error("internal error while loading: {0}")]
    Internal(String),
}

impl LoadError {
    /// The stable name of this error's kind, as the CLI prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::TooLarge { .. } => "too-large",
            LoadError::InvalidComponent(_) => "invalid-component",
            LoadError::UnknownImport { .. } => "unknown-import",
            LoadError::CompileTimeout { .. } => "compile-timeout",
            LoadError::Init(e) | LoadError::Describe(e) => e.kind(),
            LoadError::SnapshotTooLarge { .. } => "too-large",
            LoadError::InvalidInfo(_) => "invalid-component",
            LoadError::Internal(_) => "internal",
        }
    }
}

/// Interface namespaces this host links, with the major.minor every import of them must
/// carry. Used to name an unknown import; the linker itself decides what links.
const PROVIDED: &[(&str, &str)] = &[
    ("wasi:io/", "0.2."),
    ("wasi:clocks/", "0.2."),
    ("wasi:random/", "0.2."),
    ("wasi:cli/", "0.2."),
    ("wasi:filesystem/", "0.2."),
    ("wasi:sockets/", "0.2."),
    ("coda:applet/", "0.1."),
    ("coda:applet/", "0.2."),
];

fn is_provided(name: &str) -> bool {
    let Some((interface, version)) = name.split_once('@') else {
        return false;
    };
    PROVIDED.iter().any(|(prefix, major_minor)| {
        interface.starts_with(prefix) && version.starts_with(major_minor)
    })
}

/// Refuses what is plainly not an applet before anything is compiled.
fn check_bytes(bytes: &[u8], options: &LoadOptions) -> Result<(), LoadError> {
    let size = bytes.len() as u64;
    if size > options.max_bytes {
        return Err(LoadError::TooLarge {
            size,
            limit: options.max_bytes,
        });
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::InvalidComponent(
            "this is a core WebAssembly module, not a component: build it for wasm32-wasip2 \
             or wrap it with `wasm-tools component new`"
                .into(),
        ));
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(LoadError::InvalidComponent(
            "not a WebAssembly component (the file does not start with the component header)"
                .into(),
        ));
    }
    Ok(())
}

impl Runtime {
    /// Loads a component: checks its size and kind, compiles it (or loads its cached
    /// artifact), checks its exports and imports, links it and calls its `describe`.
    /// The same bytes loaded twice are compiled and described once per process.
    ///
    /// A component that exports `wizer-initialize` is pre-initialized first (`preinit.rs`):
    /// its init runs once under `options.limits`, and what is compiled is the snapshot.
    pub async fn load(
        &self,
        bytes: &[u8],
        options: &LoadOptions,
    ) -> Result<Arc<LoadedApplet>, LoadError> {
        self.load_with(bytes, options, true).await
    }

    /// Loads a component as it was built, without running its `wizer-initialize`: what a
    /// host that does not pre-initialize runs, for comparing the two.
    pub async fn load_as_built(
        &self,
        bytes: &[u8],
        options: &LoadOptions,
    ) -> Result<Arc<LoadedApplet>, LoadError> {
        self.load_with(bytes, options, false).await
    }

    async fn load_with(
        &self,
        bytes: &[u8],
        options: &LoadOptions,
        pre_initialize: bool,
    ) -> Result<Arc<LoadedApplet>, LoadError> {
        check_bytes(bytes, options)?;
        let digest = cache::digest(bytes);
        // The same bytes loaded as built are another applet in this process.
        let key = if pre_initialize {
            digest.clone()
        } else {
            format!("{digest}:as-built")
        };
        if let Some(loaded) = self.loaded_applet(&key) {
            return Ok(loaded);
        }
        let (code, pre_init) = if pre_initialize {
            self.pre_initialized(bytes, &digest, options.limits).await?
        } else {
            (bytes.to_vec(), PreInit::None)
        };
        let code_digest = preinit::code_digest(&code, &digest, pre_init);
        let (component, compiled) = self.component(&code, &code_digest).await?;
        let world = world_version(&component, &self.inner.engine)?;
        let coda_imports = check_imports(&component, &self.inner.engine)?;
        let pre = Pre::new(world, &self.inner.linker, &component).map_err(link_error)?;
        let info = self.describe(&pre, options.limits).await?;
        let loaded = Arc::new(LoadedApplet {
            digest: digest.clone(),
            world,
            info,
            coda_imports,
            compiled,
            pre_init,
            pre,
        });
        // Another task may have loaded the same bytes meanwhile; either copy is equivalent.
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, loaded.clone());
        Ok(loaded)
    }

    fn loaded_applet(&self, digest: &str) -> Option<Arc<LoadedApplet>> {
        self.inner
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(digest)
            .cloned()
    }

    /// The compiled component: from the artifact cache, or compiled (and then cached).
    async fn component(&self, bytes: &[u8], digest: &str) -> Result<(Component, bool), LoadError> {
        let engine = &self.inner.engine;
        if let Some(artifact) = self.inner.cache.as_ref().and_then(|c| c.get(digest)) {
            // SAFETY: the artifact was produced by `Component::serialize` on an engine with
            // the same compatibility hash (part of the entry's name), and its checksum
            // matched, so it is exactly what was written.
            match unsafe { Component::deserialize(engine, &artifact) } {
                Ok(component) => return Ok((component, false)),
                Err(e) => {
                    tracing::warn!(%digest, "cached artifact does not load, recompiling: {e:#}")
                }
            }
        }
        let started = Instant::now();
        let component = self.compile(bytes).await?;
        tracing::debug!(%digest, elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
        if let Some(cache) = &self.inner.cache {
            match component.serialize() {
                Ok(artifact) => {
                    if let Err(e) = cache.put(digest, &artifact) {
                        tracing::warn!(%digest, "cannot write the compiled artifact to the cache: {e}");
                    }
                }
                Err(e) => tracing::warn!(%digest, "cannot serialize the compiled component: {e:#}"),
            }
        }
        Ok((component, true))
    }

    /// Compiles on a blocking thread, one compile at a time, within the compile timeout.
    pub(crate) async fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let permits = self.inner.compile_permits.clone();
        let timeout = self.inner.config.compile_timeout;
        let engine = self.inner.engine.clone();
        let bytes = bytes.to_vec();
        let work = async move {
            // The permit moves into the blocking task: a compile abandoned by its caller
            // still holds it until it really ends.
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|e| LoadError::Internal(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                Component::new(&engine, &bytes)
            })
            .await
            .map_err(|e| LoadError::Internal(format!("the compile task failed: {e}")))?
            .map_err(|e| LoadError::InvalidComponent(format!("{e:#}")))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| LoadError::CompileTimeout {
                millis: timeout.as_millis(),
            })?
    }

    async fn describe(
        &self,
        pre: &Pre,
        limits: limits::Limits,
    ) -> Result<coda_types::AppletInfo, LoadError> {
        limits
            .validate()
            .map_err(|why| LoadError::Internal(format!("invalid limits: {why}")))?;
        let state = HostState::new(
            limits,
            Default::default(),
            Values::new(),
            Values::new(),
            Arc::new(crate::capabilities::DenyAll),
            None,
        );
        let _slot = self.inner.instance_permits.acquire().await;
        let mut store = sandbox::new_store(&self.inner.engine, state);
        let limits = store.data().limits;
        let outcome = tokio::time::timeout(crate::budget(&limits), pre.describe(&mut store)).await;
        let info = self
            .settle(outcome, &store)
            .map_err(LoadError::Describe)?
            .map_err(LoadError::InvalidInfo)?;
        check_info(&info).map_err(LoadError::InvalidInfo)?;
        Ok(info)
    }
}

/// The world version whose handler the component exports.
fn world_version(
    component: &Component,
    engine: &wasmtime::Engine,
) -> Result<WorldVersion, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    for version in WorldVersion::ALL {
        if exports.iter().any(|name| name == version.handler_export()) {
            return Ok(version);
        }
    }
    let found = if exports.is_empty() {
        "it exports nothing".to_string()
    } else {
        format!("it exports {}", exports.join(", "))
    };
    Err(LoadError::InvalidComponent(format!(
        "the component does not export {} (the applet world's describe and run): {found}",
        WorldVersion::ALL
            .map(|v| format!("`{}`", v.handler_export()))
            .join(" or ")
    )))
}

/// Refuses an import this host does not provide at all, and lists the coda interfaces
/// imported.
fn check_imports(
    component: &Component,
    engine: &wasmtime::Engine,
) -> Result<Vec<String>, LoadError> {
    let mut coda = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        if !is_provided(name) {
            return Err(LoadError::UnknownImport { name: name.into() });
        }
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(LoadError::InvalidComponent(format!(
                "import `{name}` is not an interface instance"
            )));
        }
        if let Some(rest) = name.strip_prefix("coda:applet/") {
            let interface = rest.split('@').next().unwrap_or(rest);
            if interface != "types" {
                coda.push(interface.to_string());
            }
        }
    }
    coda.sort();
    Ok(coda)
}

/// A link failure: the linker names what did not match (a missing function or a type that
/// differs from what this host defines).
fn link_error(error: wasmtime::Error) -> LoadError {
    LoadError::InvalidComponent(format!(
        "the component does not link against this host: {error:#}"
    ))
}

fn check_info(info: &coda_types::AppletInfo) -> Result<(), String> {
    // The rules plans name applets by: an applet that breaks them could never be used.
    if !coda_types::names::is_valid_name(&info.name) {
        return Err(format!(
            "describe returned the name {:?}: use 1 to {} of a-z 0-9 . _ -, starting with a letter or digit",
            info.name.chars().take(80).collect::<String>(),
            coda_types::names::MAX_NAME_LEN
        ));
    }
    if !coda_types::names::is_exact_version(&info.version) {
        return Err(format!(
            "describe returned the version {:?}, which is not an exact semantic version (MAJOR.MINOR.PATCH)",
            info.version.chars().take(80).collect::<String>()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for exit in &info.exits {
        if exit.trim().is_empty() {
            return Err("describe declares an empty exit name".into());
        }
        if exit == "error" {
            return Err(
                "describe declares an exit named `error`, which every node already has".into(),
            );
        }
        if !seen.insert(exit) {
            return Err(format!("describe declares the exit `{exit}` twice"));
        }
    }
    if !(info.config_schema.is_object() || info.config_schema.is_boolean()) {
        return Err("the config schema is neither a JSON object nor a boolean".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str) -> coda_types::AppletInfo {
        coda_types::AppletInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            exits: vec!["next".into()],
            config_schema: serde_json::json!({}),
            needs_live_party: false,
            capabilities: vec![],
        }
    }

    #[test]
    fn describe_answers_follow_the_naming_rules_of_plans() {
        assert!(check_info(&info("sms", "0.1.0")).is_ok());
        assert!(
            check_info(&info("Hello", "0.1.0"))
                .unwrap_err()
                .contains("\"Hello\"")
        );
        assert!(check_info(&info("sms@2", "0.1.0")).is_err());
        assert!(
            check_info(&info("sms", "0.1"))
                .unwrap_err()
                .contains("semantic version")
        );
        let mut twice = info("sms", "1.0.0");
        twice.exits = vec!["sent".into(), "sent".into()];
        assert!(check_info(&twice).unwrap_err().contains("twice"));
        let mut error_exit = info("sms", "1.0.0");
        error_exit.exits = vec!["error".into()];
        assert!(check_info(&error_exit).is_err());
    }

    #[test]
    fn provided_imports_match_by_major_minor() {
        assert!(is_provided("wasi:io/poll@0.2.0"));
        assert!(is_provided("wasi:sockets/tcp@0.2.12"));
        assert!(is_provided("coda:applet/data@0.1.0"));
        assert!(!is_provided("wasi:http/types@0.2.0"));
        assert!(!is_provided("wasi:io/poll@0.3.0"));
        assert!(is_provided("coda:applet/kv@0.2.0"));
        assert!(!is_provided("coda:applet/data@0.3.0"));
        assert!(!is_provided("acme:missing/thing@1.0.0"));
        assert!(!is_provided("unversioned"));
    }

    #[test]
    fn bytes_are_checked_before_compiling() {
        let small = LoadOptions {
            max_bytes: 4,
            ..LoadOptions::default()
        };
        assert!(matches!(
            check_bytes(b"\0asm\x0d\0\x01\0", &small),
            Err(LoadError::TooLarge { size: 8, limit: 4 })
        ));
        let core = check_bytes(b"\0asm\x01\0\0\0", &LoadOptions::default()).unwrap_err();
        assert!(
            core.to_string().contains("core WebAssembly module"),
            "{core}"
        );
        let junk = check_bytes(b"#!/bin/sh\n", &LoadOptions::default()).unwrap_err();
        assert_eq!(junk.kind(), "invalid-component");
    }
}
