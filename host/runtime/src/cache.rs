//! The on-disk cache of compiled components, so a restart loads instead of compiling.
//!
//! An entry is keyed by the component's SHA-256 and by the engine's compatibility hash
//! (wasmtime version and every setting that changes the code), and holds the artifact
//! prefixed with its own SHA-256. The directory is opened once as a capability (`cap-std`):
//! entry names are hex digests the cache computes itself, and nothing outside the directory
//! can be reached through it.
//!
//! Snapshots of pre-initialized components (`preinit.rs`) are kept here too, keyed by the
//! input component's SHA-256 and [`SNAPSHOT_RECIPE`]: they are WebAssembly, not native code,
//! so they do not depend on the engine, only on how the init was run.
//!
//! **Architecture Invariant:** an artifact is only deserialized after its checksum matches,
//! and entries appear by atomic rename, so a torn write or a corrupted file is recompiled,
//! never executed.

use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::Path;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

/// What a snapshot depends on besides the input's bytes: the wizer release and the init's
/// environment (`HostState::for_init`). Change it when either changes, so old snapshots are
/// made again rather than reused.
const SNAPSHOT_RECIPE: &str = "wizer48-init1";

pub(crate) struct ArtifactCache {
    dir: Dir,
    engine_key: String,
}

/// SHA-256 of the bytes, in hex.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    /// Opens (creating it if needed) the cache directory for this engine.
    pub(crate) fn open(path: &Path, engine: &wasmtime::Engine) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, ambient_authority())?;
        // `DefaultHasher::new()` has fixed keys; should its output change across Rust
        // releases, old entries are merely not found and get recompiled.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    fn entry_name(&self, digest: &str) -> String {
        format!("{digest}-{}.cwasm", self.engine_key)
    }

    fn snapshot_name(digest: &str) -> String {
        format!("{digest}-{SNAPSHOT_RECIPE}.snapshot.wasm")
    }

    /// The cached artifact of the component with this digest, if one is present and intact.
    /// A damaged entry is removed.
    pub(crate) fn get(&self, digest: &str) -> Option<Vec<u8>> {
        self.read_entry(&self.entry_name(digest))
    }

    /// Stores an artifact.
    pub(crate) fn put(&self, digest: &str, artifact: &[u8]) -> io::Result<()> {
        self.write_entry(&self.entry_name(digest), artifact)
    }

    /// The snapshot of the pre-initialized component whose input has this digest, if one is
    /// present and intact.
    pub(crate) fn get_snapshot(&self, digest: &str) -> Option<Vec<u8>> {
        self.read_entry(&Self::snapshot_name(digest))
    }

    /// Stores the snapshot of the component whose input has this digest.
    pub(crate) fn put_snapshot(&self, digest: &str, snapshot: &[u8]) -> io::Result<()> {
        self.write_entry(&Self::snapshot_name(digest), snapshot)
    }

    /// An entry's content if its checksum matches; a damaged entry is removed.
    fn read_entry(&self, name: &str) -> Option<Vec<u8>> {
        let bytes = self.dir.read(name).ok()?;
        if bytes.len() > 32 && Sha256::digest(&bytes[32..]).as_slice() == &bytes[..32] {
            return Some(bytes[32..].to_vec());
        }
        tracing::warn!(entry = %name, "removing a damaged cache entry");
        let _ = self.dir.remove_file(name);
        None
    }

    /// Writes an entry: to a temporary name, synced, then renamed into place.
    fn write_entry(&self, name: &str, artifact: &[u8]) -> io::Result<()> {
        let temp = format!("{name}.{}.tmp", std::process::id());
        let result = (|| {
            let mut file = self.dir.create(&temp)?;
            file.write_all(&Sha256::digest(artifact))?;
            file.write_all(artifact)?;
            file.sync_all()?;
            self.dir.rename(&temp, &self.dir, name)
        })();
        if result.is_err() {
            let _ = self.dir.remove_file(&temp);
        }
        result
    }
}
