//! Hostile: `run` recurses without bound (not a tail call) until the wasm stack overflows.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

/// Recurses with its state in wasm locals only, so every frame costs native (wasm) stack
/// and none of the shadow stack in linear memory: the host's stack limit is what stops it.
/// The multiply-add after the call keeps it from becoming a loop.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    recurse(depth - 1)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(depth)
}

struct DeepRecursion;

impl Applet for DeepRecursion {
    type Config = Config;

    fn info() -> Info {
        Info::new("deep-recursion", env!("CARGO_PKG_VERSION"))
            .description("Recurses until the stack overflows")
            .exits(["next"])
    }

    fn run(cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        // The depth comes from outside the program, so it cannot be folded away.
        let depth = black_box(u64::MAX - u64::from(cx.attempt()));
        cx.set_data("result", &black_box(recurse(depth)))?;
        Ok(Outcome::exit("next"))
    }
}

coda_sdk::export_applet!(DeepRecursion);
