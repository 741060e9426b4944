//! The one wasmtime engine of a runtime, and the thread that advances its epoch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    Strategy,
};

use crate::RuntimeConfig;
use crate::limits;

/// Builds the engine: Cranelift, fuel, epoch interruption, and a pooling allocator tuned so
/// a fresh instance per invocation costs microseconds (pages stay resident and are reset
/// with `memset`; `pagemap_scan` resets only the pages a guest touched).
pub(crate) fn new_engine(config: &RuntimeConfig) -> wasmtime::Result<Engine> {
    let slots = config.max_concurrent_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        // A Rust applet has a handful of core instances; componentize-py output a few dozen.
        .max_core_instances_per_component(64)
        .total_core_instances(slots.saturating_mul(8))
        .max_memories_per_component(8)
        .total_memories(slots.saturating_mul(2))
        .max_tables_per_component(64)
        .max_tables_per_module(4)
        .total_tables(slots.saturating_mul(8))
        .table_elements(limits::DEFAULT_TABLE_ELEMENTS as usize)
        .total_stacks(slots)
        .max_memory_size(limits::MAX_MEMORY_BYTES as usize)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);

    let mut wasm = Config::new();
    wasm.strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_component_model(true)
        // Component-model async (concurrent calls into one instance) is not used: an applet
        // runs one call per store, and the option costs store set-up time.
        .concurrency_support(false)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.wasm_stack_bytes)
        // The fiber stack holds the wasm stack plus the host functions it calls.
        .async_stack_size(config.wasm_stack_bytes + (1 << 20))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm)
}

/// Advances the engine's epoch every [`limits::EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("coda-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(limits::EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
