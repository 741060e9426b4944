//! Time as the engine sees it: the wall clock, or a virtual one that jumps to the next due
//! run so that pauses of days pass at once (for tests and for trying a plan).

use std::sync::atomic::{AtomicI64, Ordering};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// For a virtual clock: moves time forward to `ms` and returns true. The wall clock
    /// cannot be moved and returns false.
    fn advance_to(&self, _ms: i64) -> bool {
        false
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        coda_types::time::now_ms()
    }
}

/// Starts at the wall clock's time and only moves when told.
#[derive(Debug)]
pub struct VirtualClock(AtomicI64);

impl VirtualClock {
    pub fn new() -> Self {
        VirtualClock(AtomicI64::new(WallClock.now_ms()))
    }

    /// Starts at `ms` (since the Unix epoch), in the past or the future.
    pub fn starting_at(ms: i64) -> Self {
        VirtualClock(AtomicI64::new(ms))
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn advance_to(&self, ms: i64) -> bool {
        self.0.fetch_max(ms, Ordering::SeqCst);
        true
    }
}
