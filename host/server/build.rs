//! Rebuild when the console's files change: `include_dir!` tracks the files it embedded,
//! but not a file added to or removed from `console/dist` (each build names its assets
//! anew, by their hash).
fn main() {
    println!("cargo:rerun-if-changed=../../console/dist");
}
