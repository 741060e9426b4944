//! The applet world versions this host serves, one module each (as Zed does per extension
//! API version). Each module generates its own bindings with `bindgen!`, implements its
//! imports on [`HostState`](crate::sandbox::HostState), and converts its types to and from
//! `coda-types`, so nothing outside this module depends on a WIT version.
//!
//! Adding a version: a `wit/vX.Y.Z/` folder, a module beside the others, a variant in
//! [`WorldVersion`] and [`Pre`], and its prefix in `load.rs`'s `PROVIDED`; the older modules
//! keep serving older components. v0.2.0 added one interface (`kv`), so its module forwards
//! every other import to v0.1.0's host side rather than implementing it twice.

use wasmtime::component::{Component, Linker};

use crate::sandbox::HostState;
use coda_types::{AppletInfo, Failure, Outcome};

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

/// A world version, told from the name of the handler a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldVersion {
    V0_1_0,
    V0_2_0,
}

impl WorldVersion {
    pub const ALL: [WorldVersion; 2] = [WorldVersion::V0_1_0, WorldVersion::V0_2_0];

    /// The export every component of this version carries.
    pub fn handler_export(self) -> &'static str {
        match self {
            WorldVersion::V0_1_0 => "coda:applet/handler@0.1.0",
            WorldVersion::V0_2_0 => "coda:applet/handler@0.2.0",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorldVersion::V0_1_0 => "0.1.0",
            WorldVersion::V0_2_0 => "0.2.0",
        }
    }

    pub(crate) fn add_to_linker(self, linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        match self {
            WorldVersion::V0_1_0 => v0_1_0::add_to_linker(linker),
            WorldVersion::V0_2_0 => v0_2_0::add_to_linker(linker),
        }
    }
}

/// A component ready to instantiate, in its world version's bindings.
#[derive(Clone)]
pub(crate) enum Pre {
    V0_1_0(v0_1_0::AppletPre<HostState>),
    V0_2_0(v0_2_0::AppletPre<HostState>),
}

impl Pre {
    pub(crate) fn new(
        version: WorldVersion,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> wasmtime::Result<Self> {
        match version {
            WorldVersion::V0_1_0 => Ok(Pre::V0_1_0(v0_1_0::AppletPre::new(
                linker.instantiate_pre(component)?,
            )?)),
            WorldVersion::V0_2_0 => Ok(Pre::V0_2_0(v0_2_0::AppletPre::new(
                linker.instantiate_pre(component)?,
            )?)),
        }
    }

    pub(crate) async fn describe(
        &self,
        store: &mut wasmtime::Store<HostState>,
    ) -> wasmtime::Result<Result<AppletInfo, String>> {
        match self {
            Pre::V0_1_0(pre) => v0_1_0::describe(pre, store).await,
            Pre::V0_2_0(pre) => v0_2_0::describe(pre, store).await,
        }
    }

    pub(crate) async fn run(
        &self,
        store: &mut wasmtime::Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<Outcome, Failure>> {
        match self {
            Pre::V0_1_0(pre) => v0_1_0::run(pre, store, config).await,
            Pre::V0_2_0(pre) => v0_2_0::run(pre, store, config).await,
        }
    }
}
