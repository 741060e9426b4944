//! The applets of `applets/` (the examples and the hostile applets), built for the host's
//! tests and benches.
//!
//! The build script runs one nested `cargo build --release --target wasm32-wasip2` over the
//! `applets/` workspace, into its own cached target directory (`target/wasm`, or
//! `$CODA_WASM_TARGET_DIR`), so the components are built once and rebuilt only when
//! `applets/`, `sdk/` or `wit/` change. What it exports:
//!
//! - one constant per applet, named after its package in upper snake case (`HELLO`,
//!   `INFINITE_LOOP`), holding the absolute path of its `.wasm` component in that target
//!   directory;
//! - [`ALL`]: every applet as (package name, path);
//! - [`BUILTIN`]: the built-in applets (`applets/builtin/*`) as (package name, bytes), the
//!   components embedded: this is how the `coda` binary ships them;
//! - [`foreach_hostile!`]: calls a macro once per hostile applet (`applets/hostile/*`), so a
//!   test suite can make sure each one has a test.
//!
//! The paths point into the build tree: they are for tests and benches on the machine that
//! built them, not for shipping; [`BUILTIN`] carries bytes, not paths.

include!(concat!(env!("OUT_DIR"), "/applets.rs"));

/// Reads a file (one of the paths above), panicking with the path and the error if it
/// cannot.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read applet component `{path}`: {e}"))
}
