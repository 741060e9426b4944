//! Hostile: `run` allocates 1 MiB chunks, writes every page of each, and keeps them all live,
//! until the memory limit (or the allocator) stops it.

use core::hint::black_box;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

const CHUNK: usize = 1 << 20;
const PAGE: usize = 1 << 16;

struct MemoryBomb;

impl Applet for MemoryBomb {
    type Config = Config;

    fn info() -> Info {
        Info::new("memory-bomb", env!("CARGO_PKG_VERSION"))
            .description("Allocates memory until it runs out")
            .exits(["next"])
    }

    fn run(_cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            for (i, page) in chunk.chunks_mut(PAGE).enumerate() {
                page[0] = black_box(i as u8 | 1);
            }
            chunks.push(black_box(chunk));
            black_box(&mut chunks);
        }
    }
}

coda_sdk::export_applet!(MemoryBomb);
