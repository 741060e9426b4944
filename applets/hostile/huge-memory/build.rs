//! Asks the linker for an initial linear memory of 1 GiB plus one page: the component's core
//! module then declares a memory the host must refuse before running anything. Nothing is
//! stored for it in the file (a memory's initial size is one number).

const INITIAL_MEMORY: u64 = (1 << 30) + (1 << 16);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg=--initial-memory={INITIAL_MEMORY}");
}
