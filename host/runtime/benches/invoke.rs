//! Per-invocation cost of coda against raw wasmtime on the same engine, plus compile and
//! load times. A small harness of its own (no criterion): every op's latency is recorded and
//! the table reports the median and p99 in ns/op.
//!
//! ```text
//! cargo bench -p coda-runtime --bench invoke
//! CODA_BENCH_OPS=200000 CODA_BENCH_ROUNDS=20 cargo bench -p coda-runtime --bench invoke
//! ```
//!
//! * `raw`: the runtime's own `wasmtime::Engine`, a `Linker` with only WASI p2, one
//!   `InstancePre`; per op a fresh `Store` holding a default `WasiCtx` and a `ResourceTable`,
//!   the same fuel and epoch deadline coda sets, `instantiate_async`, then `run`.
//! * `coda`: `Runtime::load` once, then per op `Runtime::invoke` (fresh sandbox, every limit
//!   on), checking the outcome is `Exit("next")`.
//!
//! Both run the `noop` applet, on 1 thread and on 2 threads (two OS threads, each with its
//! own current-thread tokio runtime and its own loop). Raw and coda rounds alternate, after
//! a warm-up, so machine noise falls on both alike.
//!
//! Environment: `CODA_BENCH_OPS` ops per (mode, threads) cell, summed over rounds and
//! threads (default 200000); `CODA_BENCH_ROUNDS` alternating rounds (default 20);
//! `CODA_BENCH_COMPILES` iterations of each compile and load measurement (default 5);
//! `CODA_BENCH_VERBOSE` (any value) also prints every round's figures to stderr.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use coda_runtime::{
    Invocation, InvocationContext, LoadOptions, LoadedApplet, Outcome, Runtime, RuntimeConfig,
    limits,
};
use wasmtime::Store;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod raw {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "applet",
        exports: { default: async },
    });
}

use raw::coda::applet::types as wit;

/// The raw side's store data: WASI and its resource table, nothing else.
struct RawState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Raw,
    Coda,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Raw => "raw wasmtime",
            Mode::Coda => "coda",
        }
    }
}

/// What every op of both modes needs: the runtime (whose engine raw also uses), the
/// loaded applet for coda, the pre-instantiated component for raw.
struct Fixture {
    runtime: Runtime,
    applet: Arc<LoadedApplet>,
    raw_pre: raw::AppletPre<RawState>,
}

fn context() -> InvocationContext {
    InvocationContext {
        tenant: "acme".into(),
        interaction: Some("int-1".into()),
        run: "run-1".into(),
        plan: "post-call".into(),
        node: "n1".into(),
        idempotency_key: "run-1/n1/1".into(),
        attempt: 1,
        ..Default::default()
    }
}

fn wit_invocation(cx: &InvocationContext) -> wit::Invocation {
    wit::Invocation {
        context: wit::Context {
            tenant: cx.tenant.clone(),
            interaction: cx.interaction.clone(),
            run: cx.run.clone(),
            plan: cx.plan.clone(),
            node: cx.node.clone(),
            idempotency_key: cx.idempotency_key.clone(),
            attempt: cx.attempt,
        },
        config: "{}".to_owned(),
    }
}

/// One raw op: fresh store and WASI context, same fuel and epoch deadline as coda,
/// instantiate, call `run`.
async fn raw_op(fx: &Fixture, cx: &InvocationContext) {
    let state = RawState {
        ctx: WasiCtx::builder().build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(fx.runtime.engine(), state);
    store.set_fuel(limits::DEFAULT_FUEL).expect("fuel");
    store.set_epoch_deadline(1);
    // As coda does: at a tick, yield and go on rather than trap (the runtime's epoch thread
    // ticks every few ms, so an op now and then straddles a tick).
    store.epoch_deadline_async_yield_and_update(1);
    let applet = fx
        .raw_pre
        .instantiate_async(&mut store)
        .await
        .expect("instantiate");
    let result = applet
        .coda_applet_handler()
        .call_run(&mut store, &wit_invocation(cx))
        .await
        .expect("run");
    assert!(
        matches!(&result, Ok(wit::Outcome::Exit(exit)) if exit == "next"),
        "raw noop returned {result:?}"
    );
}

/// One coda op: `Runtime::invoke` with a fresh sandbox and the default limits.
async fn coda_op(fx: &Fixture, cx: &InvocationContext) {
    let report = fx
        .runtime
        .invoke(
            &fx.applet,
            Invocation::new(cx.clone(), serde_json::json!({})),
        )
        .await;
    assert!(
        matches!(&report.result, Ok(Outcome::Exit(exit)) if exit == "next"),
        "coda noop returned {:?}",
        report.result
    );
}

/// Runs `ops` ops of `mode` on this thread, recording each op's latency in ns.
async fn run_ops(fx: &Fixture, mode: Mode, ops: usize, out: &mut Vec<u64>) {
    let cx = context();
    for _ in 0..ops {
        let start = Instant::now();
        match mode {
            Mode::Raw => raw_op(fx, &cx).await,
            Mode::Coda => coda_op(fx, &cx).await,
        }
        out.push(start.elapsed().as_nanos() as u64);
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One round of one mode on `threads` OS threads, each driving its own loop of
/// `ops_per_thread` ops. Returns the latencies of all threads and the wall time from the
/// common start to the last thread's end.
fn round(fx: &Fixture, mode: Mode, threads: usize, ops_per_thread: usize) -> (Vec<u64>, Duration) {
    let barrier = Barrier::new(threads);
    let results: Vec<(Vec<u64>, Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let tokio = current_thread_runtime();
                    let mut lat = Vec::with_capacity(ops_per_thread);
                    tokio.block_on(async {
                        // A few untimed ops so this thread's caches are warm.
                        let mut sink = Vec::new();
                        run_ops(fx, mode, 16, &mut sink).await;
                        barrier.wait();
                        let start = Instant::now();
                        run_ops(fx, mode, ops_per_thread, &mut lat).await;
                        (lat, start, Instant::now())
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let start = results.iter().map(|r| r.1).min().expect("a thread");
    let end = results.iter().map(|r| r.2).max().expect("a thread");
    let lat = results.into_iter().flat_map(|r| r.0).collect();
    (lat, end - start)
}

/// All latencies and the summed wall time of one (mode, threads) cell.
#[derive(Default)]
struct Cell {
    lat: Vec<u64>,
    wall: Duration,
}

struct Stats {
    ops: usize,
    median: u64,
    p99: u64,
    ops_per_sec: f64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl Cell {
    fn stats(&self) -> Stats {
        let mut sorted = self.lat.clone();
        sorted.sort_unstable();
        Stats {
            ops: sorted.len(),
            median: percentile(&sorted, 0.5),
            p99: percentile(&sorted, 0.99),
            ops_per_sec: sorted.len() as f64 / self.wall.as_secs_f64(),
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let ops = env_usize("CODA_BENCH_OPS", 200_000).max(2);
    let rounds = env_usize("CODA_BENCH_ROUNDS", 20).max(1);
    let compiles = env_usize("CODA_BENCH_COMPILES", 5).max(1);
    let verbose = std::env::var_os("CODA_BENCH_VERBOSE").is_some();
    let started = Instant::now();

    let noop = coda_applet_artifacts::read(coda_applet_artifacts::NOOP);
    let hello = coda_applet_artifacts::read(coda_applet_artifacts::HELLO);

    let tokio = current_thread_runtime();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let applet = tokio
        .block_on(runtime.load(&noop, &LoadOptions::default()))
        .expect("loading noop");
    assert!(
        applet.coda_imports.is_empty(),
        "noop must import no coda interface, it imports {:?}",
        applet.coda_imports
    );
    let component = Component::new(runtime.engine(), &noop).expect("compiling noop");
    let mut linker = Linker::<RawState>::new(runtime.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("linking WASI");
    let raw_pre = raw::AppletPre::new(linker.instantiate_pre(&component).expect("instance pre"))
        .expect("applet pre");
    let fx = Fixture {
        runtime: runtime.clone(),
        applet,
        raw_pre,
    };

    // Invocation: alternate raw and coda rounds (and which goes first) so noise hits both.
    let cells_spec = [
        (Mode::Raw, 1),
        (Mode::Coda, 1),
        (Mode::Raw, 2),
        (Mode::Coda, 2),
    ];
    let mut cells: Vec<Cell> = cells_spec.iter().map(|_| Cell::default()).collect();
    for &threads in &[1usize, 2] {
        // Warm-up: pool slots, page tables, allocator caches, branch predictors.
        for mode in [Mode::Raw, Mode::Coda] {
            round(&fx, mode, threads, 500);
        }
    }
    let per_round = (ops / rounds).max(2);
    for r in 0..rounds {
        for &threads in &[1usize, 2] {
            let order = if r % 2 == 0 {
                [Mode::Raw, Mode::Coda]
            } else {
                [Mode::Coda, Mode::Raw]
            };
            for mode in order {
                let (lat, wall) = round(&fx, mode, threads, per_round / threads);
                if verbose {
                    let mut sorted = lat.clone();
                    sorted.sort_unstable();
                    eprintln!(
                        "round {r:>2} {:<12} {threads}t  median {:>6} ns  p99 {:>6} ns  {:>8.0} ops/s",
                        mode.name(),
                        percentile(&sorted, 0.5),
                        percentile(&sorted, 0.99),
                        lat.len() as f64 / wall.as_secs_f64()
                    );
                }
                let i = cells_spec
                    .iter()
                    .position(|&(m, t)| m == mode && t == threads)
                    .expect("a cell");
                cells[i].lat.extend(lat);
                cells[i].wall += wall;
            }
        }
    }
    drop(fx);

    // Compile and cached-artifact load times, on the same engine.
    let engine = runtime.engine().clone();
    let mut compile_rows = Vec::new();
    for (name, bytes) in [("hello", &hello), ("noop", &noop)] {
        let mut compile = Vec::new();
        let mut component = None;
        for _ in 0..compiles {
            let start = Instant::now();
            component = Some(Component::new(&engine, bytes).expect("compile"));
            compile.push(start.elapsed());
        }
        let artifact = component.expect("compiled").serialize().expect("serialize");
        let mut deserialize = Vec::new();
        for _ in 0..compiles {
            let start = Instant::now();
            // SAFETY: the artifact was just produced by `serialize` on this very engine.
            let c = unsafe { Component::deserialize(&engine, &artifact) }.expect("deserialize");
            deserialize.push(start.elapsed());
            drop(c);
        }
        // `Runtime::load` in a fresh runtime: cold (empty cache dir: compile, write the
        // artifact, describe) and warm (the artifact on disk: read, check, deserialize,
        // describe). The runtime's creation is not timed.
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..compiles {
            let dir = tempfile::tempdir().expect("tempdir");
            for samples in [&mut cold, &mut warm] {
                let fresh = Runtime::new(RuntimeConfig {
                    cache_dir: Some(dir.path().to_path_buf()),
                    ..RuntimeConfig::default()
                })
                .expect("runtime");
                let start = Instant::now();
                let loaded = tokio
                    .block_on(fresh.load(bytes, &LoadOptions::default()))
                    .expect("load");
                samples.push(start.elapsed());
                drop(loaded);
                drop(fresh);
            }
        }
        compile_rows.push((
            name,
            bytes.len(),
            median_ms(compile),
            median_ms(deserialize),
            median_ms(cold),
            median_ms(warm),
        ));
    }

    // The report.
    let stats: Vec<Stats> = cells.iter().map(Cell::stats).collect();
    println!();
    println!(
        "coda invoke bench: noop applet, {ops} ops per cell in {rounds} alternating rounds, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<14} {:>7} {:>8} {:>11} {:>11} {:>11}",
        "mode", "threads", "ops", "median ns", "p99 ns", "ops/s"
    );
    for ((mode, threads), s) in cells_spec.iter().zip(&stats) {
        println!(
            "{:<14} {:>7} {:>8} {:>11} {:>11} {:>11.0}",
            mode.name(),
            threads,
            s.ops,
            s.median,
            s.p99,
            s.ops_per_sec
        );
    }
    println!();
    println!(
        "{:<14} {:>7} {:>14} {:>14} {:>14}",
        "coda / raw", "threads", "median ratio", "p99 ratio", "ops/s ratio"
    );
    for (i, threads) in [(0usize, 1), (2, 2)] {
        let (raw, coda) = (&stats[i], &stats[i + 1]);
        println!(
            "{:<14} {:>7} {:>14.2} {:>14.2} {:>14.2}",
            "",
            threads,
            coda.median as f64 / raw.median as f64,
            coda.p99 as f64 / raw.p99 as f64,
            coda.ops_per_sec / raw.ops_per_sec
        );
    }
    println!();
    println!(
        "{:<8} {:>9} {:>12} {:>16} {:>16} {:>16}",
        "applet", "bytes", "compile ms", "deserialize ms", "load cold ms", "load warm ms"
    );
    for (name, size, compile, deserialize, cold, warm) in compile_rows {
        println!(
            "{name:<8} {size:>9} {compile:>12.2} {deserialize:>16.3} {cold:>16.2} {warm:>16.3}"
        );
    }
    println!();
    println!(
        "(median of {compiles}; load = Runtime::load in a fresh runtime with cache_dir, cold = empty cache, warm = artifact on disk; both include describe)"
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
