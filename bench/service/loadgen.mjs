// The load generator for the service benchmark (bench/service/README.md): one program for
// coda and for Restate, so both sides pay the same client cost on the same two cores.
//
// Closed loop (--mode closed): C clients, each doing one workflow after another.
//   coda:    POST `started` (the live plan, whose post-interaction plan is the benchmark's),
//            POST `ended` (answers the run it started), then follow GET /v1/runs/{id}/tail
//            to its `end` event; the workflow counts when that says `done`.
//   restate: POST /PostInteraction/{id}/run on the ingress; it answers when the workflow ends.
// Open loop (--mode open, coda only): every workflow's events as fast as the service
//   acknowledges them (C requests in flight), then wait until every run has finished.
//
// Measured over the window after a warm-up: workflows/s, latency percentiles, CPU seconds,
// peak RSS and bytes written to disk (/proc/PID/io write_bytes) of each process given with
// --pid NAME=PID, the machine's busy share, and the loopback server's count of calls and
// distinct idempotency keys (a duplicate call shows there). Prints one JSON line.
//
// usage: node loadgen.mjs --target coda|restate [--mode closed|open] --n 20000 --c 64
//          --warmup 1000 --prefix r1 [--pid server=P ...] [--loopback http://127.0.0.1:8026]
//          coda:    --api http://127.0.0.1:8080 --token TOKEN [--plan bench-live]
//          restate: [--ingress http://127.0.0.1:8080]
import http from "node:http";
import fs from "node:fs";

const args = { pid: [] };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--/, "");
  const value = process.argv[i + 1];
  if (value === undefined) throw new Error(`--${key} needs a value`);
  if (key === "pid") args.pid.push(value);
  else args[key] = value;
}
const TARGET = args.target ?? "coda";
const MODE = args.mode ?? "closed";
const N = parseInt(args.n ?? "20000");
const C = parseInt(args.c ?? "64");
const WARMUP = parseInt(args.warmup ?? "1000");
const PREFIX = args.prefix ?? `run${Date.now()}`;
const LOOPBACK = args.loopback ?? "http://127.0.0.1:8026";
const PIDS = Object.fromEntries(args.pid.map((p) => p.split("=")));
if (!["coda", "restate"].includes(TARGET)) throw new Error(`unknown target ${TARGET}`);
if (!["closed", "open"].includes(MODE)) throw new Error(`unknown mode ${MODE}`);
if (MODE === "open" && TARGET !== "coda") throw new Error("the open loop drives coda only");
const BASE = new URL(TARGET === "coda" ? (args.api ?? "http://127.0.0.1:8080") : (args.ingress ?? "http://127.0.0.1:8080"));
const TOKEN = args.token;
const LIVE_PLAN = args.plan ?? "bench-live";
if (TARGET === "coda" && !TOKEN) throw new Error("--token is needed for coda");
const TICK = 100; // USER_HZ on Linux

// Tails stay open for a run's whole life: one socket each, beside the event requests.
const agent = new http.Agent({ keepAlive: true, maxSockets: 2 * C + 8, maxFreeSockets: 2 * C + 8 });

// A full queue is answered 429 with Retry-After (coda's backpressure): wait and send again,
// as a contact center's delivery would. The open loop meets it once it outruns the runs.
async function request(method, path, body, headers = {}) {
  for (;;) {
    try {
      return await requestOnce(method, path, body, headers);
    } catch (e) {
      if (e.retryAfter === undefined) throw e;
      await new Promise((r) => setTimeout(r, e.retryAfter * 1000));
    }
  }
}

function requestOnce(method, path, body, headers) {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: BASE.hostname,
        port: BASE.port,
        path,
        method,
        agent,
        headers: {
          ...(TOKEN ? { authorization: `Bearer ${TOKEN}` } : {}),
          ...(data ? { "content-type": "application/json", "content-length": data.length } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          if (res.statusCode < 200 || res.statusCode > 299) {
            const e = new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
            if (res.statusCode === 429) e.retryAfter = Number(res.headers["retry-after"] ?? 1);
            return reject(e);
          }
          try {
            resolve(text ? JSON.parse(text) : null);
          } catch {
            reject(new Error(`${method} ${path}: not JSON: ${text.slice(0, 200)}`));
          }
        });
        res.on("error", reject);
      }
    );
    req.on("error", reject);
    req.end(data);
  });
}

// Reads a run's SSE tail until its `end` event; resolves with the run's final status.
function followTail(run) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: BASE.hostname, port: BASE.port, path: `/v1/runs/${encodeURIComponent(run)}/tail`, agent, headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream" } },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`tail of ${run}: HTTP ${res.statusCode}`));
        }
        res.setEncoding("utf8");
        let buffered = "";
        let settled = false;
        res.on("data", (chunk) => {
          buffered += chunk;
          let cut;
          while ((cut = buffered.indexOf("\n\n")) >= 0) {
            const message = buffered.slice(0, cut);
            buffered = buffered.slice(cut + 2);
            const event = /^event: ?(.*)$/m.exec(message)?.[1];
            const data = message.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
            if (event === "end") {
              settled = true;
              res.destroy();
              return resolve(JSON.parse(data).status);
            }
            if (event === "error") {
              settled = true;
              res.destroy();
              return reject(new Error(`tail of ${run}: ${data}`));
            }
          }
        });
        res.on("close", () => settled || reject(new Error(`tail of ${run} closed before its end`)));
        res.on("error", (e) => settled || reject(e));
      }
    );
    req.on("error", reject);
    req.end();
  });
}

const OUTCOMES = ["completed", "escalated", "abandoned"];

async function codaEvents(id, i) {
  await request("POST", "/v1/interactions/events", {
    type: "started",
    interaction: id,
    channel: "voice",
    plan: LIVE_PLAN,
    data: { CustomerName: "Ada", CLID: `+3310${String(i % 10000000).padStart(7, "0")}` },
  });
  const ended = await request("POST", "/v1/interactions/events", { type: "ended", interaction: id, outcome: OUTCOMES[i % 3] });
  if (ended?.runs?.length !== 1) throw new Error(`ended ${id} started ${JSON.stringify(ended?.runs)}, not one run`);
  return ended.runs[0];
}

async function workflow(id, i) {
  if (TARGET === "restate") {
    const out = await request("POST", `/PostInteraction/${encodeURIComponent(id)}/run`, {
      interactionId: id,
      clid: `+33 1 ${String(10000000 + (i % 89999999)).padStart(8, "0")}`,
      outcome: ["resolved", "escalated", "abandoned"][i % 3],
    });
    if (out?.status !== "done" || out.interactionId !== id) throw new Error(`unexpected result ${JSON.stringify(out).slice(0, 200)}`);
    return;
  }
  const run = await codaEvents(id, i);
  if (MODE === "open") return;
  const status = await followTail(run);
  if (status !== "done") throw new Error(`run ${run} ended ${status}`);
}

async function drive(n, c, prefix, lat) {
  let next = 0;
  let errors = 0;
  let firstError = null;
  async function client() {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const t0 = process.hrtime.bigint();
      try {
        await workflow(`${prefix}-${i}`, i);
        if (lat) lat[i] = Number(process.hrtime.bigint() - t0) / 1e6;
      } catch (e) {
        errors++;
        firstError ??= String(e.message ?? e);
        if (lat) lat[i] = NaN;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(c, n) }, client));
  return { errors, firstError };
}

// Open loop: every run has finished when none is ready, waiting or parked. Asked every 50 ms.
async function allFinished() {
  for (;;) {
    let pending = 0;
    for (const status of ["ready", "waiting", "parked"]) {
      const page = await request("GET", `/v1/runs?status=${status}&limit=1`);
      pending += page.runs.length;
    }
    if (pending === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    const wb = /write_bytes: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, "utf8"));
    return { cpu: (+f[11] + +f[12]) / TICK, threads: +f[17], writeBytes: wb ? +wb[1] : 0 };
  } catch {
    return null;
  }
}
function vmKiB(pid, field) {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? +m[1] : null;
  } catch {
    return null;
  }
}
function sysCpu() {
  const l = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { idle: l[3] + l[4], total: l.slice(0, 8).reduce((a, b) => a + b, 0) };
}
function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;
}
function loopback(path, method = "GET") {
  return new Promise((resolve) => {
    const req = http.request(`${LOOPBACK}${path}`, { method }, (res) => {
      const ch = [];
      res.on("data", (c) => ch.push(c));
      res.on("end", () => {
        try {
          resolve(JSON.parse(Buffer.concat(ch).toString()));
        } catch {
          resolve(null);
        }
      });
    });
    req.on("error", () => resolve(null));
    req.end();
  });
}

// coda's own counters (GET /metrics): the store's group commits and writes, the scheduler's
// picks and the steps continued under a kept claim; per workflow they are deterministic where
// wall time is not (the machine is shared). Null for Restate or a coda without them.
function codaCounters() {
  if (TARGET !== "coda") return Promise.resolve(null);
  return new Promise((resolve) => {
    const req = http.request({ host: BASE.hostname, port: BASE.port, path: "/metrics", agent }, (res) => {
      const ch = [];
      res.on("data", (c) => ch.push(c));
      res.on("end", () => {
        const text = Buffer.concat(ch).toString();
        const get = (name) => +(new RegExp(`^${name}_total (\\d+)`, "m").exec(text)?.[1] ?? NaN);
        resolve({
          commits: get("coda_store_commits"),
          writes: get("coda_store_writes"),
          picks: get("coda_scheduler_picks"),
          continued: get("coda_steps_continued"),
          steps: get("coda_steps"),
        });
      });
    });
    req.on("error", () => resolve(null));
    req.end();
  });
}

// ---- warm-up (not measured) ----
if (WARMUP > 0) {
  const w = await drive(WARMUP, C, `${PREFIX}-warm`, null);
  if (MODE === "open") await allFinished();
  if (w.errors) console.error(`warm-up errors: ${w.errors}, the first: ${w.firstError}`);
}
await loopback("/reset", "POST");

// ---- the measured window ----
const before = {};
for (const [name, pid] of Object.entries(PIDS)) {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, "5"); // peak RSS from here
  } catch {}
  before[name] = procStat(pid);
}
const counters0 = await codaCounters();
const sys0 = sysCpu();
const cpu0 = process.cpuUsage();
const lat = new Float64Array(N);
const t0 = process.hrtime.bigint();
const { errors, firstError } = await drive(N, C, PREFIX, MODE === "closed" ? lat : null);
const ackedS = Number(process.hrtime.bigint() - t0) / 1e9;
if (MODE === "open") await allFinished();
const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
const cpu1 = process.cpuUsage(cpu0);
const sys1 = sysCpu();
const counters1 = await codaCounters();

const procs = {};
for (const [name, pid] of Object.entries(PIDS)) {
  const a = before[name];
  const b = procStat(pid);
  if (!a || !b) continue;
  const cpuS = b.cpu - a.cpu;
  procs[name] = {
    cpuSeconds: +cpuS.toFixed(2),
    cpuCoresAvg: +(cpuS / wallS).toFixed(2),
    cpuMsPerWorkflow: +((cpuS * 1000) / N).toFixed(3),
    peakRssMiB: +((vmKiB(pid, "VmHWM") ?? 0) / 1024).toFixed(1),
    writtenKiBPerWorkflow: +((b.writeBytes - a.writeBytes) / 1024 / N).toFixed(1),
    threads: b.threads,
  };
}
const loadgenCpu = (cpu1.user + cpu1.system) / 1e6;
procs.loadgen = { cpuSeconds: +loadgenCpu.toFixed(2), cpuCoresAvg: +(loadgenCpu / wallS).toFixed(2) };
const ok = Array.from(lat).filter((x) => x > 0).sort((a, b) => a - b);
const result = {
  target: TARGET,
  mode: MODE,
  prefix: PREFIX,
  n: N,
  concurrency: C,
  warmup: WARMUP,
  completed: N - errors,
  errors,
  firstError,
  wallSeconds: +wallS.toFixed(3),
  workflowsPerSec: +((N - errors) / wallS).toFixed(1),
  ...(MODE === "open" ? { acknowledgedPerSec: +(N / ackedS).toFixed(1) } : {}),
  ...(ok.length
    ? {
        latencyMs: {
          p50: +pct(ok, 50).toFixed(2),
          p90: +pct(ok, 90).toFixed(2),
          p99: +pct(ok, 99).toFixed(2),
          max: +ok[ok.length - 1].toFixed(2),
        },
      }
    : {}),
  machineCpuBusyPct: +(100 * (1 - (sys1.idle - sys0.idle) / (sys1.total - sys0.total))).toFixed(1),
  procs,
  ...(counters0 && counters1
    ? {
        perWorkflow: Object.fromEntries(
          Object.keys(counters0).map((k) => [k, +((counters1[k] - counters0[k]) / N).toFixed(2)])
        ),
      }
    : {}),
  loopback: await loopback("/stats"),
};
console.log(JSON.stringify(result));
agent.destroy();
if (errors) process.exitCode = 1;
