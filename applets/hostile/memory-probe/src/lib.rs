//! Hostile: looks for data left behind by an earlier invocation.
//!
//! With `write`, it fills a leaked 64 KiB heap allocation and a 64 KiB static buffer with the
//! pattern (hex-decoded, repeated) and exits `written`. With `seek`, it scans the whole linear
//! memory for the pattern, skipping the one copy it made itself: exit `found` (with data source
//! `found_at`, the address) when memory still holds the pattern, else `clean`.

use core::hint::black_box;
use core::ptr;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The pattern to write, as hex.
    write: Option<String>,
    /// The pattern to look for, as hex.
    seek: Option<String>,
}

const FILL: usize = 64 * 1024;

static mut STATIC_FILL: [u8; FILL] = [0; FILL];

struct MemoryProbe;

impl Applet for MemoryProbe {
    type Config = Config;

    fn info() -> Info {
        Info::new("memory-probe", env!("CARGO_PKG_VERSION"))
            .description("Writes a pattern into memory, or looks for one left behind")
            .exits(["written", "found", "clean"])
    }

    fn run(cx: &mut Context, config: Config) -> Result<Outcome, Failure> {
        match (config.write, config.seek) {
            (Some(hex), None) => {
                let pattern = decode(&hex)?;
                write(&pattern);
                Ok(Outcome::exit("written"))
            }
            (None, Some(hex)) => {
                let pattern = decode(&hex)?;
                match seek(&pattern) {
                    Some(address) => {
                        cx.set_data("found_at", &address)?;
                        Ok(Outcome::exit("found"))
                    }
                    None => Ok(Outcome::exit("clean")),
                }
            }
            // Both: write, then look. The positive control that shows the scan finds a
            // pattern that is there.
            (Some(write_hex), Some(seek_hex)) if write_hex == seek_hex => {
                let pattern = decode(&write_hex)?;
                write(&pattern);
                match seek(&pattern) {
                    Some(address) => {
                        cx.set_data("found_at", &address)?;
                        Ok(Outcome::exit("found"))
                    }
                    None => Ok(Outcome::exit("clean")),
                }
            }
            _ => Err(Failure::new(
                "bad-config",
                "give `write`, `seek`, or both with the same pattern",
            )),
        }
    }
}

/// Decodes hex into one exactly sized vector, so that no other (reallocated) copy of the
/// pattern exists in memory.
fn decode(hex: &str) -> Result<Vec<u8>, Failure> {
    let hex = hex.as_bytes();
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return Err(Failure::new(
            "bad-config",
            "the pattern must be a non-empty, even number of hex digits",
        ));
    }
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        let (Some(high), Some(low)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err(Failure::new("bad-config", "the pattern is not hex"));
        };
        bytes.push(high << 4 | low);
    }
    Ok(bytes)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn write(pattern: &[u8]) {
    let heap: &'static mut [u8] = Box::leak(vec![0u8; FILL].into_boxed_slice());
    let statik = &raw mut STATIC_FILL as *mut u8;
    for i in 0..FILL {
        let byte = pattern[i % pattern.len()];
        // SAFETY: `i` is within both 64 KiB buffers; the static is only touched here, by the
        // single thread of the invocation, through a raw pointer.
        unsafe {
            ptr::write_volatile(heap.as_mut_ptr().add(i), byte);
            ptr::write_volatile(statik.add(i), byte);
        }
    }
    black_box(heap);
}

/// The address of the first copy of `pattern` in linear memory other than `pattern` itself.
fn seek(pattern: &[u8]) -> Option<usize> {
    let own = pattern.as_ptr() as usize..pattern.as_ptr() as usize + pattern.len();
    let end = core::arch::wasm32::memory_size(0).saturating_mul(1 << 16);
    let last_start = end.checked_sub(pattern.len())?;
    let first = pattern[0];
    let mut address = black_box(0usize);
    while address <= last_start {
        let overlaps_own = address < own.end && own.start < address + pattern.len();
        if !overlaps_own && read(address) == first && matches_at(address, pattern) {
            return Some(address);
        }
        address += 1;
    }
    None
}

fn matches_at(address: usize, pattern: &[u8]) -> bool {
    pattern
        .iter()
        .enumerate()
        .all(|(i, &byte)| read(address + i) == byte)
}

/// Reads one byte of linear memory, any address (0 included: it is ordinary memory in wasm).
fn read(address: usize) -> u8 {
    // SAFETY: every address below `memory_size * 64 KiB` is readable linear memory.
    unsafe { ptr::read_volatile(ptr::with_exposed_provenance::<u8>(address)) }
}

coda_sdk::export_applet!(MemoryProbe);
