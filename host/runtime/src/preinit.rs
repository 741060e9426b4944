//! Pre-initialization: a component that exports [`INIT_EXPORT`] has that function run once,
//! when it is loaded, and its memory and globals snapshotted into a new component
//! (`wasmtime-wizer`). Every step then instantiates the snapshot: what the init set up (the
//! built-in applets' CEL and template environments, a parsed time-zone database) is
//! already in memory, as data segments, which wasmtime maps copy-on-write like any other.
//!
//! The init is the applet's code, so it runs like an invocation: in the sandbox, under the
//! load's limits (fuel, memory, deadline), on the runtime's one linker, nothing granted. Its
//! WASI is deterministic besides (`HostState::for_init`: stopped clocks, seeded random), so a
//! snapshot is a function of the bytes alone. Wizer instruments and rewrites the component;
//! the runtime instantiates, runs the init and reads the state back itself
//! ([`Access`]), so a failure anywhere is a typed [`LoadError`], never a panic.
//!
//! The snapshot is cached on disk by the input's digest beside the compiled artifacts
//! (`cache.rs`), so a component is initialized once, across restarts and for every node
//! that shares the cache directory. A component without the export is loaded as it is.

use wasmparser::{ComponentExternalKind, Parser, Payload};
use wasmtime::component::{Component, Instance, Lift, WasmList, types::ComponentItem};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::sandbox::{self, HostState};
use crate::{LoadError, Runtime, cache, limits};

/// The export a component pre-initializes itself with: wizer's conventional name, a
/// top-level `func()` outside the coda world (which is unchanged: a host that does not know
/// the export ignores it, and an applet must work without it having run).
pub const INIT_EXPORT: &str = "wizer-initialize";

/// How a loaded applet's start-up state was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreInit {
    /// The component exports no [`INIT_EXPORT`]: every step starts it afresh.
    None,
    /// This load ran the init and made the snapshot.
    Ran,
    /// The snapshot was read from the cache: the init did not run again.
    Cached,
}

/// Whether the component exports [`INIT_EXPORT`] as a function at its top level, read from
/// the bytes without compiling them.
pub(crate) fn exports_init(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            return false;
        };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 0 => {
                let found = exports.into_iter().flatten().any(|export| {
                    export.name.name == INIT_EXPORT && export.kind == ComponentExternalKind::Func
                });
                if found {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

impl Runtime {
    /// The bytes to compile for `bytes` (whose digest is `digest`): its snapshot when it
    /// exports [`INIT_EXPORT`] (from the cache, else made now and cached), else `bytes`.
    pub(crate) async fn pre_initialized(
        &self,
        bytes: &[u8],
        digest: &str,
        limits: limits::Limits,
    ) -> Result<(Vec<u8>, PreInit), LoadError> {
        if !exports_init(bytes) {
            return Ok((bytes.to_vec(), PreInit::None));
        }
        if let Some(snapshot) = self
            .inner
            .cache
            .as_ref()
            .and_then(|c| c.get_snapshot(digest))
        {
            return Ok((snapshot, PreInit::Cached));
        }
        // On a task of its own: should wizer panic on a component it did not expect, the
        // load fails rather than the host.
        let runtime = self.clone();
        let input = bytes.to_vec();
        let snapshot = tokio::spawn(async move { runtime.snapshot(&input, limits).await })
            .await
            .map_err(|e| {
                tracing::warn!(%digest, "pre-initialization panicked: {e}");
                LoadError::InvalidComponent(format!(
                    "it exports `{INIT_EXPORT}` but pre-initializing it failed inside wizer"
                ))
            })??;
        if let Some(cache) = &self.inner.cache
            && let Err(e) = cache.put_snapshot(digest, &snapshot)
        {
            tracing::warn!(%digest, "cannot write the snapshot to the cache: {e}");
        }
        tracing::debug!(%digest, bytes = snapshot.len(), "pre-initialized component");
        Ok((snapshot, PreInit::Ran))
    }

    /// Instruments the component, runs its init under `limits` and snapshots the result.
    async fn snapshot(&self, bytes: &[u8], limits: limits::Limits) -> Result<Vec<u8>, LoadError> {
        let mut wizer = Wizer::new();
        // The component still lifts the core export; dropping it (wizer's default for core
        // modules) would leave that lift dangling. The host never calls it again.
        wizer.keep_init_func(true);
        let (context, instrumented) = wizer.instrument_component(bytes).map_err(|e| {
            LoadError::InvalidComponent(format!(
                "it exports `{INIT_EXPORT}` but cannot be pre-initialized: {e:#}"
            ))
        })?;
        let component = self.compile(&instrumented).await?;
        let init = init_export(&component)?;
        limits
            .validate()
            .map_err(|why| LoadError::Internal(format!("invalid limits: {why}")))?;

        let _slot = self.inner.instance_permits.acquire().await;
        let mut store = sandbox::new_store(&self.inner.engine, HostState::for_init(limits));
        let run = async {
            let instance = self
                .inner
                .linker
                .instantiate_async(&mut store, &component)
                .await?;
            let func = instance.get_typed_func::<(), ()>(&mut store, init)?;
            func.call_async(&mut store, ()).await?;
            Ok(instance)
        };
        let outcome = tokio::time::timeout(crate::budget(&limits), run).await;
        let instance = self.settle(outcome, &store).map_err(LoadError::Init)?;

        // What runs from here is wizer's accessors, not the applet: a budget of their own.
        let _ = store.set_fuel(limits::SNAPSHOT_FUEL);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
        let mut access = Access {
            store: &mut store,
            instance,
            failed: None,
        };
        let snapshot = wizer
            .snapshot_component(&context, &mut access)
            .await
            .map_err(|e| {
                LoadError::InvalidComponent(format!(
                    "it exports `{INIT_EXPORT}` but its initialized state cannot be snapshotted: {e:#}"
                ))
            })?;
        if let Some(why) = access.failed {
            return Err(LoadError::InvalidComponent(format!(
                "it exports `{INIT_EXPORT}` but its initialized state cannot be read: {why}"
            )));
        }
        let size = snapshot.len() as u64;
        if size > limits::MAX_SNAPSHOT_BYTES {
            return Err(LoadError::SnapshotTooLarge {
                size,
                limit: limits::MAX_SNAPSHOT_BYTES,
            });
        }
        Ok(snapshot)
    }
}

/// The index of the init export of the instrumented component, checked to be `func()`.
fn init_export(
    component: &Component,
) -> Result<wasmtime::component::ComponentExportIndex, LoadError> {
    match component.get_export(None, INIT_EXPORT) {
        Some((ComponentItem::ComponentFunc(ty), index))
            if ty.params().len() == 0 && ty.results().len() == 0 =>
        {
            Ok(index)
        }
        _ => Err(LoadError::InvalidComponent(format!(
            "its `{INIT_EXPORT}` export is not a function taking and returning nothing"
        ))),
    }
}

/// Wizer's view of the initialized instance: it calls the accessor functions its
/// instrumentation added (`wasmtime:wizer/access`) to read each memory and global. The
/// trait cannot fail, so the first error is kept in `failed` and the snapshot discarded.
struct Access<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
    failed: Option<String>,
}

impl Access<'_> {
    async fn call<R: Lift + Send + Sync + 'static>(
        &mut self,
        instance: &str,
        func: &str,
    ) -> Option<R> {
        let result = async {
            let (_, parent) = self
                .instance
                .get_export(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export `{instance}`"))?;
            let (_, index) = self
                .instance
                .get_export(&mut *self.store, Some(&parent), func)
                .ok_or_else(|| wasmtime::format_err!("no export `{instance}#{func}`"))?;
            let func = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, index)?;
            Ok::<_, wasmtime::Error>(func.call_async(&mut *self.store, ()).await?.0)
        }
        .await;
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.failed
                    .get_or_insert_with(|| format!("{instance}#{func}: {e:#}"));
                None
            }
        }
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        match self.call::<WasmList<u8>>(instance, func).await {
            Some(list) => contents(list.as_le_slice(&*self.store)),
            None => contents(&[]),
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func).await.unwrap_or_default()
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call::<f32>(instance, func)
            .await
            .map(f32::to_bits)
            .unwrap_or_default()
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call::<f64>(instance, func)
            .await
            .map(f64::to_bits)
            .unwrap_or_default()
    }
}

/// The digest a snapshot's compiled artifact is cached under (its own bytes').
pub(crate) fn code_digest(code: &[u8], input_digest: &str, pre_init: PreInit) -> String {
    match pre_init {
        PreInit::None => input_digest.to_string(),
        PreInit::Ran | PreInit::Cached => cache::digest(code),
    }
}
