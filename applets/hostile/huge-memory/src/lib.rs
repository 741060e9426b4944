//! Hostile: its core module declares an initial linear memory of over 1 GiB (set by the
//! linker argument in `build.rs`). `run`, if it ever gets to run, writes the last byte of
//! that memory.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct HugeMemory;

impl Applet for HugeMemory {
    type Config = Config;

    fn info() -> Info {
        Info::new("huge-memory", env!("CARGO_PKG_VERSION"))
            .description("Declares an initial memory of over 1 GiB")
            .exits(["touched"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let bytes = core::arch::wasm32::memory_size(0).saturating_mul(1 << 16);
        let last = black_box(bytes - 1);
        // SAFETY: `last` is inside the linear memory; nothing else uses that byte (the heap
        // grows from the start of the free memory and never got this far).
        unsafe {
            let byte = core::ptr::with_exposed_provenance_mut::<u8>(last);
            byte.write_volatile(black_box(0xA5));
            black_box(byte.read_volatile());
        }
        Ok(Outcome::exit("touched"))
    }
}

coda_sdk::export_applet!(HugeMemory);
