//! `include_dir!` cannot tell cargo which files it read (that needs a nightly API): without
//! this, an edited template would not reach the binary until something else rebuilt it.
fn main() {
    println!("cargo:rerun-if-changed=templates");
    println!("cargo:rerun-if-changed=../../wit");
}
