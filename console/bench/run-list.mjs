// The run list with 100,000 runs in the database (BENCHMARKS.md, "The console"): how long a
// page of runs takes through the API, with each of its filters, and on the console's runs
// page in Chromium. Seeds the runs through the API as a contact center would (a `started`
// and an `ended` event per interaction: 1 in 10 runs fails, 1 in 10 is in a second plan),
// into a `coda serve` this script starts with a fresh data directory and stops at the end.
//
//   CODA_BIN=target/release/coda RUNS=100000 node console/bench/run-list.mjs
//
// Env: RUNS (100000), CONCURRENCY (64 event requests in flight while seeding), REPEAT (20
// requests per measured API call), CHROMIUM (/usr/bin/chromium), OUT (a JSON file).
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import http from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const CODA_BIN = resolve(process.env.CODA_BIN ?? "target/release/coda");
const RUNS = parseInt(process.env.RUNS ?? "100000");
const CONCURRENCY = parseInt(process.env.CONCURRENCY ?? "64");
const REPEAT = parseInt(process.env.REPEAT ?? "20");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

const PLANS = {
  "list-live": `name: list-live
type: default
start: note
post_interaction: list-work
nodes:
  note: { applet: set-data@0.1.0, config: { set: [ { name: Done, value: true } ] } }
`,
  "list-rare-live": `name: list-rare-live
type: default
start: note
post_interaction: list-rare
nodes:
  note: { applet: set-data@0.1.0, config: { set: [ { name: Done, value: true } ] } }
`,
  // 1 in 10 runs fails: a CEL expression over a data source the event does not carry.
  "list-work": `name: list-work
type: unattended
start: route
nodes:
  route:
    applet: data-router@0.1.0
    config:
      rules:
        - { when: 'Seq % 10 == 0', exit: broken }
    exits: { broken: broken, default: end }
  broken:
    applet: set-data@0.1.0
    config:
      set:
        - { name: X, expression: 'Missing + 1' }
  end: { applet: set-data@0.1.0, config: { set: [ { name: Done, value: true } ] } }
`,
  "list-rare": `name: list-rare
type: unattended
start: end
nodes:
  end: { applet: set-data@0.1.0, config: { set: [ { name: Done, value: true } ] } }
`,
};

const cleanups = [];
async function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on("error", fail);
  });
}

async function startCoda() {
  const data = mkdtempSync(join(tmpdir(), "coda-run-list-"));
  const port = await freePort();
  const operator = `bench-${randomBytes(16).toString("hex")}`;
  const child = spawn(CODA_BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, CODA_DATA_DIR: data, CODA_OPERATOR_TOKEN: operator, CODA_LOG: "warn" },
    stdio: ["ignore", "inherit", "pipe"],
  });
  let stderr = "";
  await new Promise((ok, fail) => {
    child.stderr.on("data", (b) => {
      stderr += b;
      if (stderr.includes("listening on")) ok();
    });
    child.on("exit", (code) => fail(new Error(`coda serve exited (${code}):\n${stderr}`)));
  });
  cleanups.push(() => {
    child.kill("SIGTERM");
    rmSync(data, { recursive: true, force: true });
  });
  return { port, operator, data };
}

function api(port, token) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY + 4 });
  // A full queue is answered 429 with Retry-After: wait that long and send again, as a
  // contact center's delivery would.
  const call = (method, path, body, contentType = "application/json") =>
    once(method, path, body, contentType).catch(async (e) => {
      if (e.retryAfter === undefined) throw e;
      await new Promise((r) => setTimeout(r, e.retryAfter * 1000));
      return call(method, path, body, contentType);
    });
  const once = (method, path, body, contentType) =>
    new Promise((ok, fail) => {
      const data = body === undefined ? undefined : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
      const req = http.request(
        { host: "127.0.0.1", port, path, method, agent, headers: { authorization: `Bearer ${token}`, ...(data ? { "content-type": contentType, "content-length": data.length } : {}) } },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            if (res.statusCode > 299) {
              const e = new Error(`${method} ${path}: ${res.statusCode} ${text.slice(0, 300)}`);
              if (res.statusCode === 429) e.retryAfter = Number(res.headers["retry-after"] ?? 1);
              return fail(e);
            }
            ok(text ? JSON.parse(text) : null);
          });
        }
      );
      req.on("error", fail);
      req.end(data);
    });
  return call;
}

async function seed(call) {
  let next = 0;
  const t0 = Date.now();
  async function client() {
    for (;;) {
      const i = next++;
      if (i >= RUNS) return;
      const id = `list-${i}`;
      const plan = i % 10 === 5 ? "list-rare-live" : "list-live";
      await call("POST", "/v1/interactions/events", { type: "started", interaction: id, channel: "voice", plan, data: { Seq: i } });
      await call("POST", "/v1/interactions/events", { type: "ended", interaction: id, outcome: "completed" });
      if (i % 10000 === 0) process.stderr.write(`seeded ${i} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, client));
  for (;;) {
    let pending = 0;
    for (const status of ["ready", "waiting", "parked"]) pending += (await call("GET", `/v1/runs?status=${status}&limit=1`)).runs.length;
    if (!pending) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  return (Date.now() - t0) / 1000;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)];

async function timeCall(call, path) {
  const times = [];
  let page;
  for (let i = 0; i < REPEAT; i++) {
    const t0 = performance.now();
    page = await call("GET", path);
    times.push(performance.now() - t0);
  }
  return { path, runs: page.runs.length, medianMs: +median(times).toFixed(2), p95Ms: +p95(times).toFixed(2) };
}

async function main() {
  const { port, operator } = await startCoda();
  const op = api(port, operator);
  const { token } = await op("POST", "/v1/operator/tenants", { id: "lists" });
  const call = api(port, token);
  for (const [name, yaml] of Object.entries(PLANS).reverse()) await call("PUT", `/v1/plans/${name}`, yaml, "application/yaml");
  const seedSeconds = await seed(call);
  process.stderr.write(`${RUNS} runs seeded in ${seedSeconds.toFixed(0)} s\n`);

  // Walk every run by pages of 1,000: each run seen once, none missing.
  const t0 = performance.now();
  const seen = new Set();
  let after = "";
  let pages = 0;
  let middle = null;
  for (;;) {
    const page = await call("GET", `/v1/runs?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    pages++;
    for (const r of page.runs) seen.add(r.id);
    if (seen.size >= RUNS / 2 && !middle) middle = page.runs.at(-1)?.id;
    if (!page.next) break;
    after = page.next;
  }
  const walkMs = performance.now() - t0;
  if (seen.size !== RUNS) throw new Error(`the walk saw ${seen.size} runs of ${RUNS}`);

  const order = await call("GET", "/v1/runs?order=newest&limit=1").then(() => "&order=newest", () => "");
  const api100 = [];
  for (const path of [
    "/v1/runs?limit=100",
    ...(order ? [`/v1/runs?limit=100${order}`] : []),
    `/v1/runs?limit=100&after=${encodeURIComponent(middle)}`,
    "/v1/runs?limit=100&status=failed",
    "/v1/runs?limit=100&status=waiting",
    "/v1/runs?limit=100&plan=list-rare",
    "/v1/runs?limit=100&interaction=list-54321",
    "/v1/runs?limit=100&since=1h",
    `/v1/runs?limit=100&status=failed&plan=list-work${order}`,
  ]) {
    api100.push(await timeCall(call, path));
  }

  // What the API said, before the browser part (which can fail on its own).
  process.stderr.write(`${JSON.stringify({ walk: { pages, ms: +walkMs.toFixed(0) }, api: api100 }, null, 2)}\n`);

  // The console: from the address to the page's rows on screen (100, its page size chosen
  // in the address), a fresh page each time.
  const profile = mkdtempSync(join(tmpdir(), "coda-run-list-chromium-"));
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    viewport: { width: 1280, height: 800 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
  cleanups.unshift(() => context.close());
  const page = await context.newPage();
  const base = `http://127.0.0.1:${port}`;
  await page.goto(`${base}/`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
  const consoleTimes = {};
  for (const [what, query] of [
    ["runs page", "limit=100"],
    ["failed runs", "status=failed&limit=100"],
    ["middle page", `after=${encodeURIComponent(middle)}&limit=100`],
  ]) {
    // The rows the page must show: the API's answer to the same question (the console asks
    // newest first), so a smaller seed with fewer than 100 matches is timed too.
    const rows = (await call("GET", `/v1/runs?${query}&order=newest`)).runs.length;
    if (rows === 0) throw new Error(`no runs for ${query}: nothing to time`);
    const hash = `#/runs?${query}`;
    const times = [];
    for (let i = 0; i < 7; i++) {
      await page.goto(`${base}/#/plans`);
      await page.getByRole("heading", { name: "Plans" }).waitFor();
      const t = performance.now();
      await page.goto(`${base}/${hash}`);
      await page.waitForFunction((n) => document.querySelectorAll("tr[data-run]").length === n, rows, { timeout: 30_000 });
      times.push(performance.now() - t);
    }
    consoleTimes[what] = { medianMs: +median(times).toFixed(1), slowestMs: +Math.max(...times).toFixed(1) };
  }
  const result = { runs: RUNS, seedSeconds: +seedSeconds.toFixed(1), walk: { pages, ms: +walkMs.toFixed(0) }, api: api100, console: consoleTimes };
  console.log(JSON.stringify(result, null, 2));
  if (process.env.OUT) writeFileSync(process.env.OUT, JSON.stringify(result, null, 2));
}

try {
  await main();
} finally {
  for (const c of cleanups) await c();
}
