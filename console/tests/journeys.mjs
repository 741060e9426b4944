// The console's journeys in a real browser: Debian's Chromium, driven headless by
// playwright-core, against a real `coda serve` this script starts on a free port with a
// fresh data directory, and stops at the end. Each journey asserts what the page shows and
// saves a screenshot of its last page under $OUT_DIR. Every page listens for dialogs,
// uncaught errors and console errors (a Content-Security-Policy violation is one): any of
// them fails the run, so hostile data that executed anything cannot pass unnoticed.
//
//   CODA_BIN=target/debug/coda HELLO_WASM=target/wasm/wasm32-wasip2/release/hello.wasm \
//   OUT_DIR=target/console node console/tests/journeys.mjs
//
// GRANTED_WASM names an applet that needs a grant (default: world_v0_1_0.wasm beside
// HELLO_WASM) for the applet journeys.
//
// It also measures what BENCHMARKS.md reports: the first load's bytes (compressed, as
// transferred) and time, and the time to draw a 50-node plan.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const CODA_BIN = resolve(process.env.CODA_BIN ?? "target/debug/coda");
const HELLO_WASM = resolve(process.env.HELLO_WASM ?? "target/wasm/wasm32-wasip2/release/hello.wasm");
const OUT_DIR = resolve(process.env.OUT_DIR ?? "target/console");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ONLY = process.env.JOURNEY ?? "";
const TIMEOUT = 15_000;

mkdirSync(OUT_DIR, { recursive: true });
const results = [];
const shared = {};
const cleanups = [];

function check(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

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

// --- the service ---------------------------------------------------------------------------

async function startCoda() {
  const data = mkdtempSync(join(tmpdir(), "coda-console-"));
  const port = await freePort();
  const operator = `console-test-${randomBytes(16).toString("hex")}`;
  const child = spawn(CODA_BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, CODA_DATA_DIR: data, CODA_OPERATOR_TOKEN: operator, CODA_LOG: "warn" },
    stdio: ["ignore", "inherit", "pipe"],
  });
  let stderr = "";
  const up = new Promise((ok, fail) => {
    child.stderr.on("data", (b) => {
      stderr += b;
      process.stderr.write(b);
      if (stderr.includes("listening on")) ok();
    });
    child.on("exit", (code) => fail(new Error(`coda serve exited (${code}) before listening:\n${stderr}`)));
  });
  cleanups.push(() => {
    child.kill("SIGTERM");
    rmSync(data, { recursive: true, force: true });
  });
  await Promise.race([up, new Promise((_, f) => setTimeout(() => f(new Error("coda serve did not start in 60 s")), 60_000))]);
  return { base: `http://127.0.0.1:${port}`, operator };
}

function client(base, token) {
  return async (method, path, body, contentType = "application/json") => {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = contentType;
    const r = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return json;
  };
}

async function previewOf(api) {
  const port = await freePort();
  const child = spawn("node_modules/.bin/vite", ["preview", "--strictPort", "--port", String(port), "--host", "127.0.0.1"], {
    cwd: new URL("..", import.meta.url).pathname,
    env: { ...process.env, CODA_API: api },
    stdio: ["ignore", "pipe", "inherit"],
  });
  cleanups.unshift(() => child.kill("SIGTERM"));
  await new Promise((ok) => child.stdout.on("data", (b) => String(b).includes(String(port)) && ok()));
  return `http://127.0.0.1:${port}`;
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  }
  return v;
}

// --- the browser ---------------------------------------------------------------------------

async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "coda-console-chromium-"));
  cleanups.push(() => rmSync(profile, { recursive: true, force: true }));
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    viewport: { width: 1280, height: 800 },
    timezoneId: "America/New_York",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// A page that records everything that must not happen.
async function watchedPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const incidents = [];
  page.on("dialog", async (d) => {
    incidents.push(`dialog ${d.type()}: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on("pageerror", (e) => incidents.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser logs every refused request (a journey's bad token, the probe of the
    // operator's token): those are answers the page shows, not failures. Anything else
    // logged as an error is, a Content-Security-Policy violation first.
    const refusal = /^Failed to load resource: the server responded with a status of 4\d\d/;
    if (m.type() === "error" && !refusal.test(m.text())) incidents.push(`console error: ${m.text()}`);
  });
  return { page, incidents };
}

async function signIn(page, base, token) {
  await page.goto(`${base}/`);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

async function journey(name, context, body) {
  if (ONLY && !name.includes(ONLY)) return;
  const started = Date.now();
  const { page, incidents } = await watchedPage(context);
  try {
    await body(page);
    check(incidents.length === 0, `nothing executed or failed on the page: ${incidents.join("; ")}`);
    results.push({ name, ok: true, ms: Date.now() - started });
    console.error(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: String(e.stack ?? e) });
    console.error(`FAIL ${name}: ${e.stack ?? e}${incidents.length ? `\n  incidents: ${incidents.join("; ")}` : ""}`);
  } finally {
    await page.screenshot({ path: join(OUT_DIR, `${name}.png`), fullPage: true }).catch(() => {});
    await page.close();
  }
}

// --- plans ---------------------------------------------------------------------------------

const WRAPUP = {
  name: "wrapup",
  type: "unattended",
  description: "Stamp the call, route by outcome, pause, count",
  start: "stamp",
  nodes: {
    stamp: { applet: "set-data@0.1.0", config: { set: [{ name: "ProcessedBy", value: "wrapup" }] }, exits: { next: "outcome" } },
    outcome: {
      applet: "data-router@0.1.0",
      config: { rules: [{ when: 'InteractionOutcome == "sale"', exit: "sale" }] },
      exits: { sale: "wait", default: "count" },
      error: "count",
    },
    wait: { applet: "pause@0.1.0", config: { seconds: 1 }, exits: { next: "disposition" } },
    disposition: {
      applet: "wait-for-event@0.1.0",
      config: { event: "disposition", timeout_seconds: 600 },
      exits: { received: "count", timeout: "count" },
    },
    count: { applet: "loop-counter@0.1.0", config: { times: 2 }, exits: { next: "done" } },
    done: { applet: "set-data@0.1.0", config: { set: [{ name: "Finished", value: "yes" }] } },
  },
};

const LIVE = {
  name: "live",
  type: "default",
  description: "A sales call",
  start: "note",
  post_interaction: "wrapup",
  nodes: { note: { applet: "set-data@0.1.0", config: { set: [{ name: "Line", value: "sales" }] } } },
};

const HOSTILE_DESCRIPTION = '<script>alert("plan description")</script> & <i>markup</i>';
const HOSTILE_GREETING = "<img src=x onerror=alert(1)>";
const HOSTILE_HTTP = '<img src=x onerror=alert(6)>"</pre><script>alert(7)</script>';
const HOSTILE_NAME = '<b onmouseover="alert(2)">Ada</b><svg onload=alert(3)>';

const HOSTILE = {
  name: "hostile",
  type: "unattended",
  description: HOSTILE_DESCRIPTION,
  start: "greet",
  nodes: {
    greet: { applet: "hello@0.1.0", config: { greeting: HOSTILE_GREETING }, exits: { greeted: "crm" } },
    crm: {
      applet: "data-connector@0.1.0",
      config: { url: "http://127.0.0.1:CRM_PORT/crm", response: { Crm: "/name" } },
      exits: { success: "mark", failure: "mark" },
    },
    mark: { applet: "set-data@0.1.0", config: { set: [{ name: "Note", value: "<a href=javascript:alert(4)>click</a>" }] } },
  },
};

const HOSTILE_LIVE = {
  name: "hostile-live",
  type: "default",
  description: "<style>body{display:none}</style>",
  start: "note",
  post_interaction: "hostile",
  nodes: { note: { applet: "set-data@0.1.0", config: { set: [{ name: "Line", value: "x" }] } } },
};

// 50 nodes: a chain with a branch every fifth node and (`errors`) an error exit every third,
// all to the last node: sixteen long edges, the costly shape for a layered layout.
function bigPlan(name, errors) {
  const n = (i) => `n${String(i).padStart(2, "0")}`;
  const nodes = {};
  for (let i = 0; i < 50; i++) {
    const next = i < 49 ? n(i + 1) : undefined;
    if (i % 5 === 0 && i + 2 < 50) {
      nodes[n(i)] = {
        applet: "data-router@0.1.0",
        config: { rules: [{ when: `InteractionOutcome == "b${i}"`, exit: "alt" }] },
        exits: { alt: n(i + 2), default: next },
      };
    } else {
      nodes[n(i)] = {
        applet: "set-data@0.1.0",
        config: { set: [{ name: `V${i}`, value: String(i) }] },
        ...(next ? { exits: { next } } : {}),
      };
    }
    if (errors && i % 3 === 1 && i < 48) nodes[n(i)].error = n(49);
  }
  return { name, type: "unattended", description: "50 nodes, for BENCHMARKS.md", start: n(0), nodes };
}

// --- the plan editor and version diff ------------------------------------------------------

// A plan written in the editor with a mistake (an exit to a node that is not there), then
// fixed: the mistake is pinned to its node on the graph and to its field in the list.
const EDITED_WRONG = `name: edited
type: unattended
description: Written in the console's editor
start: stamp
nodes:
  stamp:
    applet: set-data@0.1.0
    config:
      set:
        - name: Stamped
          value: "yes"
    exits:
      next: nowhere
`;
const EDITED_FIXED = EDITED_WRONG.replace("next: nowhere", "next: count") + `  count:
    applet: loop-counter@0.1.0
    config:
      times: 2
`;

async function planEditorJourney({ page, base, token }) {
  await signIn(page, base, token);
  await page.getByRole("link", { name: "Plans" }).click();
  await page.getByRole("link", { name: "New plan" }).click();
  await page.getByRole("heading", { name: "New plan" }).waitFor();
  const status = page.locator("#check-status");
  // The starting text is a valid plan, checked by the server.
  await status.filter({ hasText: "Valid" }).waitFor();
  const text = page.getByLabel("Plan text (YAML or JSON)");
  // Tab indents in the text; Escape, then Tab, leaves it (the keyboard is not trapped).
  await text.focus();
  await text.press("Control+End");
  await page.keyboard.press("Tab");
  check((await text.inputValue()).endsWith("\n  "), "Tab indents by two spaces");
  await page.keyboard.press("Escape");
  await page.keyboard.press("Tab");
  check(await text.evaluate((t) => document.activeElement !== t), "Escape then Tab moves on");
  await text.fill(EDITED_WRONG);
  await status.filter({ hasText: "1 problem" }).waitFor();
  // Pinned to the node on the graph, and to its field in the list beside the text.
  await page.locator('g.node.mark-problem[data-node="stamp"]').waitFor();
  check((await page.locator('g.node[data-node="stamp"]').getAttribute("aria-label")).includes("1 problem"), "the node's label says it has a problem");
  const problem = page.getByRole("list", { name: "Problems" }).locator("li");
  check(await problem.count() === 1, "one problem listed");
  check((await problem.locator(".problem-field").textContent()) === "nodes.stamp.exits.next", "the problem names its field");
  check((await problem.locator(".problem-message").textContent()).includes('"nowhere"'), "the problem says what is wrong");
  check(await page.locator(".gutter .bad-line").count() >= 1, "the problem's line is marked beside the text");
  check((await page.getByRole("list", { name: "Legend" }).textContent()).includes("node with a problem"), "the legend explains the mark");
  // The problem's node button selects it on the graph and puts the caret on its line.
  await problem.getByRole("button", { name: "node stamp" }).click();
  await page.locator('g.node.selected[data-node="stamp"]').waitFor();
  const caretLine = await text.evaluate((t) => t.value.slice(0, t.selectionStart).split("\n").length);
  check(caretLine === 6, `the caret is on the node's line (${caretLine})`);
  await page.screenshot({ path: join(OUT_DIR, "plan-editor-problem.png"), fullPage: true });
  // At phone width the text, the problems and the graph stack, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  check(wide <= 0, `the editor fits the phone's width (overflow ${wide}px)`);
  await page.setViewportSize({ width: 1280, height: 800 });
  // The same mistake in JSON is pinned the same way.
  await text.fill(JSON.stringify({ ...DIFFED_V1, name: "edited", nodes: { ...DIFFED_V1.nodes, same: { ...DIFFED_V1.nodes.same, exits: { next: "gone" } } } }, null, 2));
  await page.locator('g.node.mark-problem[data-node="same"]').waitFor();
  check((await problem.locator(".problem-field").textContent()) === "nodes.same.exits.next", "the JSON plan's problem names its field");
  await text.fill(EDITED_WRONG);
  await page.locator('g.node.mark-problem[data-node="stamp"]').waitFor();
  // Publishing it is refused, with the reason.
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByRole("alert").filter({ hasText: "invalid-plan" }).waitFor();
  // Fixed: the mark goes, and it publishes as version 1.
  await text.fill(EDITED_FIXED);
  await status.filter({ hasText: "Valid" }).waitFor();
  await page.locator('g.node[data-node="count"]').waitFor();
  check(await page.locator("g.node.mark-problem").count() === 0, "no node is marked once fixed");
  check(await page.getByRole("list", { name: "Problems" }).count() === 0, "no problem listed once fixed");
  await page.getByRole("button", { name: "Publish" }).click();
  await page.locator(".notice").filter({ hasText: "Published edited version 1" }).waitFor();
  await page.getByRole("link", { name: "Open the plan" }).click();
  await page.getByRole("heading", { name: "Plan edited" }).waitFor();
  await page.locator('g.node[data-node="count"]').waitFor();
  check((await page.locator("ol.versions").textContent()).includes("Version 1"), "the version list shows version 1");
  // A new version from the latest: the editor starts from its text (as YAML).
  await page.getByRole("link", { name: "Edit (new version)" }).click();
  await page.getByRole("heading", { name: "Edit plan edited" }).waitFor();
  await status.filter({ hasText: "Valid" }).waitFor();
  const v1 = await text.inputValue();
  check(v1.includes("loop-counter@0.1.0") && v1.includes("times: 2"), "the editor starts from the latest version");
  await text.fill(v1.replace("times: 2", "times: 3"));
  await status.filter({ hasText: "Valid" }).waitFor();
  await page.getByRole("button", { name: "Publish" }).click();
  await page.locator(".notice").filter({ hasText: "Published edited version 2" }).waitFor();
  await page.getByRole("link", { name: "Open the plan" }).click();
  await page.locator("ol.versions").filter({ hasText: "Version 2" }).waitFor();
  check((await page.locator("dl.facts").first().textContent()).includes("2"), "the plan page shows version 2");
  // The two versions compared: the changed node is marked.
  await page.getByRole("button", { name: "Compare" }).click();
  await page.locator('.diff g.node.mark-changed[data-node="count"]').waitFor();
  check(await page.locator(".diff g.node.mark-changed").count() === 1, "only the changed node is marked");
}

// Two versions published through the API: a node changed (applet version, config, an
// exit), one added, one removed; the diff marks each on the graph and lists what changed.
const DIFFED_V1 = {
  name: "diffed",
  type: "unattended",
  start: "first",
  nodes: {
    first: { applet: "set-data@0.1.0", config: { set: [{ name: "A", value: "1" }] }, exits: { next: "old" } },
    old: { applet: "set-data@0.1.0", config: { set: [{ name: "B", value: "2" }] }, exits: { next: "last" } },
    last: { applet: "loop-counter@0.1.0", config: { times: 1 }, exits: { next: "same" } },
    same: { applet: "set-data@0.1.0", config: { set: [{ name: "C", value: "3" }] } },
  },
};
const DIFFED_V2 = {
  ...DIFFED_V1,
  nodes: {
    first: { applet: "set-data@0.1.0", config: { set: [{ name: "A", value: "changed" }] }, exits: { next: "fresh" } },
    fresh: { applet: "pause@0.1.0", config: { seconds: 1 }, exits: { next: "last" } },
    last: { applet: "set-data@0.1.0", config: { set: [{ name: "D", value: "4" }] }, exits: { next: "same" } },
    same: DIFFED_V1.nodes.same,
  },
};

async function planDiffJourney({ page, base, token, acme }) {
  await acme("PUT", "/v1/plans/diffed", DIFFED_V1);
  await acme("PUT", "/v1/plans/diffed", DIFFED_V2);
  await signIn(page, base, token);
  await page.goto(`${base}/#/plans/diffed`);
  await page.getByRole("heading", { name: "Compare versions" }).waitFor();
  // The same version twice: identical.
  await page.getByLabel("From version").selectOption("2");
  await page.getByLabel("To version").selectOption("2");
  await page.getByRole("button", { name: "Compare" }).click();
  await page.getByRole("status").filter({ hasText: "identical" }).waitFor();
  // Version 1 to 2 (the last page, for the screenshot).
  await page.getByLabel("From version").selectOption("1");
  await page.getByRole("button", { name: "Compare" }).click();
  const diff = page.locator(".diff");
  await diff.locator('g.node.mark-changed[data-node="first"]').waitFor();
  check(await diff.locator('g.node.mark-added[data-node="fresh"]').count() === 1, "the added node is marked");
  check(await diff.locator('g.node.mark-removed[data-node="old"]').count() === 1, "the removed node is drawn, marked");
  check(await diff.locator("g.node.mark-changed, g.node.mark-added, g.node.mark-removed").count() === 4, "four nodes marked");
  check(await diff.locator('g.node[data-node="same"]').getAttribute("class") === "node", "the unchanged node is not marked");
  check((await diff.locator('g.node[data-node="first"]').getAttribute("aria-label")).includes("changed in version 2: config, exits"), "the changed node's label says what changed");
  const legend = await diff.getByRole("list", { name: "Legend" }).textContent();
  check(legend.includes("added") && legend.includes("changed") && legend.includes("removed"), "the legend names each mark");
  const changes = diff.getByRole("complementary", { name: "What changed" });
  const first = await changes.locator("li.change-changed").filter({ hasText: "node first" }).textContent();
  check(first.includes("next: old → fresh"), `the exit change is listed (${first})`);
  check(first.includes('"changed"'), "the config after the change is shown");
  const last = await changes.locator("li.change-changed").filter({ hasText: "node last" }).textContent();
  check(last.includes("loop-counter@0.1.0 → set-data@0.1.0"), `the applet change is listed (${last})`);
  check((await changes.locator("li.change-added").textContent()).includes("pause@0.1.0"), "the added node's applet is listed");
  check((await changes.locator("li.change-removed").textContent()).includes("was set-data@0.1.0"), "the removed node's applet is listed");
  await page.setViewportSize({ width: 390, height: 800 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  check(wide <= 0, `the comparison fits the phone's width (overflow ${wide}px)`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

// --- the run -------------------------------------------------------------------------------

async function main() {
  const { base: api, operator } = await startCoda();
  // CONSOLE_DEV=1: the UI from `vite preview` (console/dist, the API proxied to this coda),
  // for working on the console with a `coda` built before its routes existed.
  const base = process.env.CONSOLE_DEV ? await previewOf(api) : api;
  const op = client(api, operator);
  const { token, token_id } = await op("POST", "/v1/operator/tenants", { id: "acme" });
  const acme = client(api, token);
  for (const plan of [WRAPUP, LIVE, bigPlan("fifty", true), bigPlan("fifty-plain", false)]) await acme("PUT", `/v1/plans/${plan.name}`, plan);
  // A second token, revoked, for the sign-in journey.
  const revoked = await op("POST", "/v1/operator/tenants/acme/tokens");
  await op("DELETE", `/v1/operator/tenants/acme/tokens/${revoked.token_id}`);

  // The console's client is type-checked against a copy of the API's document
  // (src/api/openapi.json → schema.d.ts): it must be the document this coda serves.
  // UPDATE_OPENAPI=1 writes the served one there (then: npm run types && npm run build).
  {
    const served = sortKeys(await (await fetch(`${api}/openapi.json`)).json());
    const text = `${JSON.stringify(served, null, 2)}\n`;
    const copy = new URL("../src/api/openapi.json", import.meta.url);
    if (process.env.UPDATE_OPENAPI) writeFileSync(copy, text);
    check(
      readFileSync(copy, "utf8") === text,
      "console/src/api/openapi.json is the document coda serves (UPDATE_OPENAPI=1 refreshes it; then npm run types && npm run build)",
    );
  }

  // The headers every console response carries, and caching.
  if (!process.env.CONSOLE_DEV) {
    const r = await fetch(`${base}/`, { headers: { "Accept-Encoding": "br, gzip" } });
    const csp = r.headers.get("content-security-policy") ?? "";
    check(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), `CSP without inline script or eval: ${csp}`);
    check(csp.includes("frame-ancestors 'none'"), "frame-ancestors 'none'");
    check(r.headers.get("x-content-type-options") === "nosniff", "nosniff");
    check(r.headers.get("referrer-policy") === "no-referrer", "referrer policy");
    check(r.headers.get("cache-control") === "no-cache", "the page is revalidated");
    const html = await r.text();
    const asset = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
    check(asset, "the page names its script");
    const a = await fetch(base + asset, { headers: { "Accept-Encoding": "br" } });
    check(a.headers.get("cache-control")?.includes("immutable"), "hashed assets are immutable");
    check(a.headers.get("content-type")?.startsWith("text/javascript"), "script content type");
    const missing = await fetch(`${base}/assets/nothing.js`);
    check(missing.status === 404, "an unknown asset is a 404");
    const api404 = await fetch(`${base}/v1/nothing-here`);
    check((await api404.json()).error.kind === "no-route", "other paths stay the API's");
  }

  const context = await launch();
  cleanups.unshift(() => context.close());
  const bench = {};

  await journey("first-load", context, async (page) => {
    const bytes = [];
    page.on("requestfinished", async (req) => {
      const s = await req.sizes().catch(() => null);
      if (s) bytes.push({ url: req.url(), body: s.responseBodySize, headers: s.responseHeadersSize });
    });
    const t0 = Date.now();
    await page.goto(`${base}/`);
    await page.getByLabel("Token").waitFor();
    const interactive = Date.now() - t0;
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      return { domInteractive: n.domInteractive, loadEventEnd: n.loadEventEnd };
    });
    await page.waitForLoadState("networkidle");
    bench.firstLoad = {
      requests: bytes.length,
      bodyBytes: bytes.reduce((s, b) => s + b.body, 0),
      totalBytes: bytes.reduce((s, b) => s + b.body + b.headers, 0),
      signInFormVisibleMs: interactive,
      ...nav,
    };
    check(bench.firstLoad.bodyBytes < 300 * 1024, `the console loads under 300 KB compressed (${bench.firstLoad.bodyBytes})`);
  });

  await journey("sign-in", context, async (page) => {
    await page.goto(`${base}/`);
    await page.getByLabel("Token").fill("coda_not-a-token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "not a live tenant token" }).waitFor();
    await page.getByLabel("Token").fill(revoked.token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "revoked" }).waitFor();
    check(await page.evaluate(() => sessionStorage.length) === 0, "a refused token is not kept");
    await page.getByLabel("Token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Runs" }).waitFor();
    check(await page.evaluate((t) => sessionStorage.getItem("coda.token") === t, token), "the token is in sessionStorage");
    check(await page.getByRole("link", { name: "Tenants" }).count() === 0, "a tenant is not offered the operator's pages");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Token").waitFor();
    check(await page.evaluate(() => sessionStorage.length) === 0, "signing out clears the token");
    // A token revoked while signed in: the next request brings the sign-in page back, saying why.
    const later = await op("POST", "/v1/operator/tenants/acme/tokens");
    await signIn(page, base, later.token);
    await op("DELETE", `/v1/operator/tenants/acme/tokens/${later.token_id}`);
    await page.getByRole("link", { name: "Plans" }).click();
    await page.getByRole("alert").filter({ hasText: "Signed out: the token is not a live tenant token" }).waitFor();
    check(await page.evaluate(() => sessionStorage.length) === 0, "a revoked session's token is dropped");
    // The operator's token signs in to the operator's page only.
    await signIn(page, base, operator);
    await page.getByRole("heading", { name: "Operator" }).waitFor();
    check(await page.getByRole("link", { name: "Runs" }).count() === 0, "the operator is not offered tenant pages");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Token").waitFor();
  });

  await journey("plan-graph", context, async (page) => {
    await signIn(page, base, token);
    await page.getByRole("link", { name: "Plans" }).click();
    await page.getByRole("link", { name: "wrapup" }).click();
    await page.getByRole("heading", { name: "Plan wrapup" }).waitFor();
    for (const [node, applet] of [["stamp", "set-data@0.1.0"], ["outcome", "data-router@0.1.0"], ["wait", "pause@0.1.0"], ["done", "set-data@0.1.0"]]) {
      const g = page.locator(`g.node[data-node="${node}"]`);
      check((await g.textContent()).includes(applet), `node ${node} shows ${applet}`);
    }
    check(await page.locator('g.edge.exit[data-edge="outcome:sale"] text').textContent() === "sale", "the exit is a labelled edge");
    check(await page.locator('g.edge.error[data-edge="outcome:error"]').count() === 1, "the error exit is drawn, distinct");
    check(await page.locator('g.edge.end[data-edge="done:next"]').count() === 1, "an unwired exit goes to the run's end");
    check(await page.locator("g.end-mark text").first().textContent() === "ends the run", "shown as ends the run");
    // The keyboard reaches a node and opens it.
    await page.locator('g.node[data-node="outcome"]').focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Node outcome" }).waitFor();
    check((await page.locator("aside.detail pre").textContent()).includes("InteractionOutcome"), "the node's config is shown");
    // The post-interaction plan is a link.
    await page.goto(`${base}/#/plans/live`);
    await page.getByRole("link", { name: "wrapup" }).waitFor();
    await page.goto(`${base}/#/plans/wrapup`);
    await page.locator('g.node[data-node="stamp"]').waitFor();
  });

  await journey("plan-editor", context, (page) => planEditorJourney({ page, base, token }));
  await journey("plan-diff", context, (page) => planDiffJourney({ page, base, token, acme }));

  await journey("live-run", context, async (page) => {
    await signIn(page, base, token);
    await page.goto(`${base}/#/runs`);
    await page.getByText("No runs match.").waitFor();
    await page.evaluate(() => { window.__notReloaded = true; });
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "call-1", channel: "voice", plan: "live", data: { CLID: "+15550100", CustomerName: "Ada" } });
    const ended = await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "call-1", outcome: "sale" });
    const runId = ended.runs[0];
    const row = page.locator(`tr[data-run="${runId}"]`);
    await row.waitFor();
    check(await page.evaluate(() => window.__notReloaded === true), "the run appeared without a reload");
    await row.getByRole("link", { name: runId }).click();
    await page.getByRole("heading", { name: `Run ${runId}` }).waitFor();
    await page.evaluate(() => { window.__notReloaded = true; });
    // It waits at `disposition` for its event: the page says so, and until when.
    await page.getByText("live: steps appear as they commit").waitFor();
    await page.locator(".waitnote").filter({ hasText: "Waiting at disposition for the event disposition until" }).waitFor();
    await page.locator('g.node.current[data-node="disposition"]').waitFor();
    await acme("POST", "/v1/interactions/call-1/events/disposition", { outcome: "resolved" });
    await page.locator(".status-done").first().waitFor({ timeout: 20_000 });
    check(await page.evaluate(() => window.__notReloaded === true), "the run finished on the page without a reload");
    for (const node of ["stamp", "outcome", "wait", "disposition", "count", "done"]) {
      check(await page.locator(`g.node.visited[data-node="${node}"]`).count() === 1, `the path visits ${node}`);
    }
    for (const edge of ["stamp:next", "outcome:sale", "wait:next", "disposition:received", "count:next"]) {
      check(await page.locator(`g.edge.taken[data-edge="${edge}"]`).count() === 1, `the path takes ${edge}`);
    }
    check(await page.locator('g.edge.taken[data-edge="outcome:default"]').count() === 0, "the exit not taken is not on the path");
    check(await page.locator('g.edge.taken[data-edge="disposition:timeout"]').count() === 0, "nor the timeout");
    const steps = page.locator("ol.timeline > li");
    check(await steps.count() === 7, `seven steps (${await steps.count()})`);
    const stamp = steps.nth(0);
    check((await stamp.textContent()).includes("ProcessedBy") && (await stamp.textContent()).includes("wrapup"), "a step's data change is shown");
    check((await steps.nth(2).textContent()).includes("pause 1000 ms"), "the pause is shown");
    check((await steps.last().textContent()).includes("Finished"), "the last step's data change is shown");
    const t = page.locator("ol.timeline time").first();
    check((await t.getAttribute("title")).endsWith("(UTC)"), "the UTC instant on hover");
    check(/E[SD]T/.test(await t.textContent()), "times in the viewer's zone");
  });

  await journey("hostile-data", context, async (page) => {
    const wasm = readFileSync(HELLO_WASM);
    await acme("POST", "/v1/applets", new Uint8Array(wasm), "application/wasm");
    // A CRM on loopback answering with markup; it keeps the Idempotency-Key it was sent.
    const keys = [];
    const crm = createHttpServer((req, res) => {
      keys.push(req.headers["idempotency-key"]);
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ name: HOSTILE_HTTP }));
    });
    await new Promise((ok) => crm.listen(0, "127.0.0.1", ok));
    cleanups.push(() => crm.close());
    await op("PUT", "/v1/operator/tenants/acme/ceiling", {
      ceiling: { http_hosts: ["127.0.0.1:*"], allow_private: ["127.0.0.0/8"] },
    });
    await acme("PUT", "/v1/grants/data-connector", { http: ["127.0.0.1:*"] });
    const plan = JSON.parse(JSON.stringify(HOSTILE).replace("CRM_PORT", String(crm.address().port)));
    await acme("PUT", "/v1/plans/hostile", plan);
    await acme("PUT", "/v1/plans/hostile-live", HOSTILE_LIVE);
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "call-2", channel: "voice", plan: "hostile-live", data: { CustomerName: HOSTILE_NAME, Notes: "<iframe src=javascript:alert(5)></iframe>" } });
    const ended = await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "call-2", outcome: "<b>sale</b>" });
    const runId = ended.runs[0];
    shared.hostileRun = runId;
    await signIn(page, base, token);
    await page.goto(`${base}/#/plans/hostile`);
    const description = page.locator("dd.description");
    await description.waitFor();
    check(await description.textContent() === HOSTILE_DESCRIPTION, "the plan's description is shown as written");
    await page.goto(`${base}/#/runs/${runId}`);
    await page.locator(".status-done").first().waitFor({ timeout: 20_000 });
    const logs = page.locator(".log .message");
    check(await logs.first().textContent() === `${HOSTILE_GREETING}, ${HOSTILE_NAME}!`, "the applet's log line is shown as written");
    check((await page.locator("ol.timeline").textContent()).includes("<a href=javascript:alert(4)>click</a>"), "a data value with markup is shown as written");
    check((await page.locator("dl.data").last().textContent()).includes("<iframe src=javascript:alert(5)></iframe>"), "event data with markup is shown as written");
    check((await page.locator("ol.effects").textContent()).includes(`{"name":${JSON.stringify(HOSTILE_HTTP)}}`), "an HTTP body with markup is shown as written");
    // data-connector sends its step's key as Idempotency-Key: the one the API gives as step_key.
    check(keys.length === 1 && (await page.locator("ol.effects code.step-key").first().textContent()) === keys[0], `the effect's step key, as the API gives it, is the one the CRM got (${keys[0]})`);
    check(await page.locator("main img, main iframe, main script, main b, main i, main a[href^=javascript], main style").count() === 0, "no markup from data became elements");
    check(await page.evaluate(() => getComputedStyle(document.body).display) !== "none", "no style from data applied");
    // Give any handler that might have been planted a moment to fire: none may.
    await page.mouse.move(300, 300);
    await page.waitForTimeout(300);
  });

  await journey("keyboard", context, async (page) => {
    // Tab until the focused element is the one `what` names (at most 60 presses).
    const tabTo = async (what, test) => {
      for (let i = 0; i < 60; i++) {
        await page.keyboard.press("Tab");
        if (await page.evaluate(test)) return;
      }
      throw new Error(`Tab never reached ${what}`);
    };
    await page.goto(`${base}/`);
    await page.getByLabel("Token").waitFor();
    check(await page.evaluate(() => document.activeElement?.id === "token"), "the token field has the focus");
    await page.keyboard.type(token);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Runs" }).waitFor();
    await tabTo("the skip link", () => document.activeElement?.textContent?.trim() === "Skip to content");
    await tabTo("Plans", () => document.activeElement?.textContent === "Plans");
    await page.keyboard.press("Enter");
    await tabTo("the plan wrapup", () => document.activeElement?.textContent === "wrapup");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Plan wrapup" }).waitFor();
    await tabTo("the node wait", () => document.activeElement?.getAttribute("data-node") === "wait");
    check((await page.evaluate(() => document.activeElement?.getAttribute("aria-label"))).includes("applet pause@0.1.0"), "a node says what it is");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Node wait" }).waitFor();
    check(await page.getByLabel("Token").count() === 0, "still signed in");
  });

  await journey("cancel-retry", context, async (page) => {
    // A run that fails (a rule that does not evaluate), and one that waits.
    await acme("PUT", "/v1/plans/bad", {
      name: "bad", type: "unattended", start: "route",
      nodes: {
        route: { applet: "data-router@0.1.0", config: { rules: [{ when: "Nope.x == 1", exit: "a" }] }, exits: { a: "set", default: "set" } },
        set: { applet: "set-data@0.1.0", config: { set: [{ name: "X", value: "1" }] } },
      },
    });
    await acme("PUT", "/v1/plans/bad-live", { ...LIVE, name: "bad-live", post_interaction: "bad" });
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "call-6", channel: "voice", plan: "bad-live", data: {} });
    const failed = (await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "call-6", outcome: "x" })).runs[0];
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "call-7", channel: "voice", plan: "live", data: {} });
    const waiting = (await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "call-7", outcome: "sale" })).runs[0];
    await signIn(page, base, token);

    await page.goto(`${base}/#/runs/${failed}`);
    await page.locator(".status-failed").first().waitFor();
    check(await page.getByRole("button", { name: "Cancel run…" }).count() === 0, "a failed run is not offered a cancel");
    await page.getByRole("button", { name: "Retry from the failed step…" }).click();
    await page.getByText("Retry this run? Node route runs again").waitFor();
    await page.getByRole("button", { name: "Leave it failed" }).click();
    await page.getByRole("button", { name: "Retry from the failed step…" }).click();
    await page.getByRole("button", { name: "Yes, retry it" }).click();
    await page.getByText("retried by API: node route runs again").waitFor();
    await page.locator(".status-failed").first().waitFor();
    await page.waitForFunction(() => document.querySelectorAll("ol.timeline > li").length === 3);

    await page.goto(`${base}/#/runs/${waiting}`);
    await page.locator(".waitnote").waitFor();
    check(await page.getByRole("button", { name: "Retry from the failed step…" }).count() === 0, "a waiting run is not offered a retry");
    await page.getByRole("button", { name: "Cancel run…" }).click();
    await page.getByRole("button", { name: "Yes, cancel it" }).click();
    await page.locator(".status-cancelled").first().waitFor();
    await page.locator("ol.timeline > li").last().filter({ hasText: "cancelled by API" }).waitFor();
    check((await acme("GET", `/v1/runs/${waiting}`)).status === "cancelled", "the API says cancelled");
  });

  await journey("runs-filters", context, async (page) => {
    // Two calls without a sale finish at once; one with a sale waits for its disposition.
    const runOf = async (id, outcome) => {
      await acme("POST", "/v1/interactions/events", { type: "started", interaction: id, channel: "voice", plan: "live", data: {} });
      return (await acme("POST", "/v1/interactions/events", { type: "ended", interaction: id, outcome })).runs[0];
    };
    await runOf("call-3", "missed");
    await runOf("call-4", "missed");
    const waiting = await runOf("call-5", "sale");
    await signIn(page, base, token);
    await page.goto(`${base}/#/runs`);
    await page.getByLabel("Plan").fill("wrapup");
    await page.getByLabel("Status").selectOption("waiting");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/status=waiting/);
    check(/plan=wrapup/.test(page.url()), "the filters are in the address");
    await page.locator(`tr[data-run="${waiting}"]`).waitFor();
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run]").length === 1);
    check((await page.locator("tr[data-run]").first().textContent()).includes("waiting"), "only the waiting run");
    // Pages of two: the API's `after`, never the whole list.
    await page.goto(`${base}/#/runs?plan=wrapup&limit=2`);
    await page.waitForFunction(() => document.querySelectorAll("tr[data-run]").length === 2);
    const first = await page.locator("tr[data-run]").evaluateAll((rows) => rows.map((r) => r.dataset.run));
    await page.getByRole("link", { name: "Next page" }).click();
    await page.waitForURL(/after=/);
    await page.waitForFunction((ids) => {
      const rows = [...document.querySelectorAll("tr[data-run]")].map((r) => r.dataset.run);
      return rows.length > 0 && rows.every((id) => !ids.includes(id));
    }, first);
    await page.getByRole("link", { name: "First page" }).waitFor();
    const all = await acme("GET", "/v1/runs?plan=wrapup&limit=1000&order=newest");
    const second = await page.locator("tr[data-run]").evaluateAll((rows) => rows.map((r) => r.dataset.run));
    check(JSON.stringify([...first, ...second]) === JSON.stringify(all.runs.map((r) => r.id).slice(0, first.length + second.length)), "the pages follow the API's order, newest first");
    check(first[0] === waiting, "the newest run heads the list");
    // Oldest first, chosen in the form: the list turns round.
    await page.goto(`${base}/#/runs?plan=wrapup`);
    await page.locator(`tr[data-run="${waiting}"]`).waitFor();
    check((await page.getByLabel("Order").inputValue()) === "newest", "newest first unless asked");
    await page.getByLabel("Order").selectOption("oldest");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/order=oldest/);
    const oldest = (await acme("GET", "/v1/runs?plan=wrapup&limit=1000&order=oldest")).runs.map((r) => r.id);
    await page.waitForFunction((id) => document.querySelector("tr[data-run]")?.dataset.run === id, oldest[0]);
    const shown = await page.locator("tr[data-run]").evaluateAll((rows) => rows.map((r) => r.dataset.run));
    check(JSON.stringify(shown) === JSON.stringify(oldest.slice(0, shown.length)), "oldest first, as the API orders it");
  });

  await journey("phone-width", context, async (page) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await signIn(page, base, token);
    await page.goto(`${base}/#/runs`);
    await page.locator("tr[data-run]").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    check(overflow <= 0, `the runs list fits the phone's width (overflow ${overflow}px)`);
    if (shared.hostileRun) {
      await page.goto(`${base}/#/runs/${shared.hostileRun}`);
      await page.locator("ol.timeline > li").first().waitFor();
      const wide = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
      check(wide <= 0, `a run's page fits the phone's width (overflow ${wide}px)`);
    }
  });

  await journey("draw-fifty", context, async (page) => {
    await signIn(page, base, token);
    bench.fiftyNodeDrawMs = {};
    for (const name of ["fifty-plain", "fifty"]) {
      const runs = [];
      for (let i = 0; i < 7; i++) {
        await page.goto(`${base}/#/plans`);
        await page.getByRole("link", { name, exact: true }).waitFor();
        await page.evaluate(() => performance.clearMeasures("coda:graph-draw"));
        await page.getByRole("link", { name, exact: true }).click();
        await page.locator('g.node[data-node="n49"]').waitFor();
        const ms = await page.evaluate(() => performance.getEntriesByName("coda:graph-draw").at(-1)?.duration ?? -1);
        check(ms >= 0, "the draw was measured");
        runs.push(ms);
      }
      check(await page.locator("g.node").count() === 50, "all 50 nodes drawn");
      runs.sort((a, b) => a - b);
      bench.fiftyNodeDrawMs[name] = { median: runs[3], min: runs[0], max: runs[6], runs: 7 };
      // The whole graph, for looking at (its box scrolls on the page).
      await page.locator(".graph").evaluate((el) => { el.style.maxHeight = "none"; });
      await page.locator(".graph-figure").screenshot({ path: join(OUT_DIR, `graph-${name}.png`) });
    }
  });

  await operatorJourney({ context, base, op, operator, revokedId: revoked.token_id });
  await usageJourney({ context, base, acme, token });
  await interactionJourneys({ context, base, token, acme });
  await appletJourneys({ context, base, api, op });

  writeFileSync(join(OUT_DIR, "bench.json"), `${JSON.stringify(bench, null, 2)}\n`);
  console.error(`measured: ${JSON.stringify(bench)}`);
  return results.every((r) => r.ok);
}

// The page at phone width does not scroll sideways; the viewport is put back after.
async function fitsPhone(page, what) {
  const before = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  await page.screenshot({ path: join(OUT_DIR, `${what.replace(/\W+/g, "-").replace(/^-|-$/g, "")}-phone.png`), fullPage: true });
  await page.setViewportSize(before);
  check(wide <= 0, `${what} fits a phone's width (overflow ${wide}px)`);
}

// --- the operator: a tenant, its ceiling, its tokens (issue 16, item 8) ----------------------

async function operatorJourney({ context, base, op, operator, revokedId }) {
  await journey("operator-tenant", context, async (page) => {
    await signIn(page, base, operator);
    await page.getByRole("heading", { name: "Operator" }).waitFor();
    // The list is the API's: acme was created through the API, never in this browser.
    const acmeRow = page.locator('tr[data-tenant="acme"]');
    await acmeRow.getByRole("link", { name: "acme", exact: true }).waitFor();
    check((await acmeRow.locator('td[data-label="Live tokens"]').textContent()).trim() === "1", "acme's one live token is counted (its other ones were revoked)");
    // Another journey may have set acme's ceiling: the list says what the API says.
    const acmeSet = (await op("GET", "/v1/operator/tenants/acme/ceiling")).set;
    check((await acmeRow.textContent()).includes("never set") === !acmeSet, "the list says whether acme's ceiling is set");
    // Its tokens, listed by the API: the one revoked through the API shows as revoked.
    await acmeRow.getByRole("link", { name: "acme", exact: true }).click();
    await page.getByRole("heading", { name: "Tenant acme" }).waitFor();
    const revokedRow = page.locator(`tr[data-token="${revokedId}"]`);
    await revokedRow.waitFor();
    check((await revokedRow.locator('td[data-label="State"]').textContent()).startsWith("revoked"), "a token revoked through the API is listed as revoked");
    check(await revokedRow.getByRole("button", { name: /Revoke/ }).count() === 0, "a revoked token offers no revoke");
    check(await page.locator("tr[data-token]").filter({ hasText: "live" }).count() === 1, "acme's live token is listed as live");
    await page.getByRole("link", { name: "All tenants" }).click();
    await page.getByRole("heading", { name: "Operator" }).waitFor();

    await page.getByLabel("Tenant id").fill("globex");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    const first = page.locator(".shown-once");
    await first.waitFor();
    check((await first.textContent()).includes("you will not see it again"), "the first token is shown once, and says so");
    check((await first.locator("code.secret").textContent()).startsWith("coda_"), "the first token's secret is shown");
    await page.getByRole("link", { name: "globex", exact: true }).waitFor();
    await page.getByRole("link", { name: "Set globex's ceiling and tokens" }).click();
    await page.getByRole("heading", { name: "Tenant globex" }).waitFor();

    // A bad value: the server's refusal beside the field it names, the field marked.
    await page.getByLabel("Fuel per invocation").fill("-1");
    await page.getByRole("button", { name: "Save ceiling" }).click();
    const fuelError = page.locator("#err-ceiling\\.fuel");
    await fuelError.waitFor();
    check((await fuelError.textContent()).includes("expected u64"), `the refusal is the server's: ${await fuelError.textContent()}`);
    check(await page.getByLabel("Fuel per invocation").getAttribute("aria-invalid") === "true", "the refused field is marked invalid");
    check((await op("GET", "/v1/operator/tenants/globex/ceiling")).set === false, "a refused ceiling is not stored");
    // A good one is stored.
    await page.getByLabel("Fuel per invocation").fill("5000000");
    await page.getByLabel("Email", { exact: true }).check();
    await page.getByLabel("HTTP hosts").fill("api.example.com\n*.crm.example.com");
    await page.getByRole("button", { name: "Save ceiling" }).click();
    await page.getByText("Saved.").waitFor();
    check(await page.locator(".field-error").count() === 0, "no refusal is left on the page");
    const stored = await op("GET", "/v1/operator/tenants/globex/ceiling");
    check(stored.ceiling.fuel === 5000000 && stored.ceiling.email === true, "the ceiling's fields are stored");
    check(JSON.stringify(stored.ceiling.http_hosts) === JSON.stringify(["api.example.com", "*.crm.example.com"]), "the hosts are stored one a line");

    // Credentials set once (here through the API) are kept when the page saves a change
    // without them: it says "kept" and does not ask for them again.
    const SMTP_SECRET = "smtp-secret-typed-once";
    const DB_SECRET = "db-secret-typed-once";
    await op("PUT", "/v1/operator/tenants/globex/ceiling", {
      ceiling: { ...stored.ceiling, email: true, databases: ["crm"] },
      smtp: { host: "mail.example.com", port: 587, from: "Globex <ops@globex.example>", username: "globex", password: SMTP_SECRET },
      databases: { crm: `postgres://app:${DB_SECRET}@db.example.com/crm` },
    });
    await page.reload();
    await page.getByRole("heading", { name: "Tenant globex" }).waitFor();
    await page.locator(".credentials-state").filter({ hasText: "kept (not shown)" }).waitFor();
    check((await page.locator(".kept-databases").textContent()).includes("crm"), "the database's credentials say kept");
    check(!(await page.content()).includes(SMTP_SECRET) && !(await page.content()).includes(DB_SECRET), "no credential is on the page");
    check(await page.getByRole("button", { name: "Replace…" }).count() === 1, "the SMTP credentials can be replaced");
    await page.getByLabel("Fuel per invocation").fill("6000000");
    await page.getByRole("button", { name: "Save ceiling" }).click();
    await page.getByText("Saved.").waitFor();
    const kept = await op("GET", "/v1/operator/tenants/globex/ceiling");
    check(kept.ceiling.fuel === 6000000, "the change is stored");
    check(kept.smtp?.authenticated === true, "the SMTP credentials were kept without being typed again");
    check(kept.databases.crm === "postgres://***@db.example.com/crm", `the database's credentials were kept: ${kept.databases.crm}`);

    // A token: shown once, listed, revoked after asking on the page.
    await page.getByRole("button", { name: "Issue a token" }).click();
    const shown = page.locator("section .shown-once");
    await shown.waitFor();
    check((await shown.textContent()).includes("you will not see it again"), "the new token says it is shown once");
    const secret = await shown.locator("code.secret").textContent();
    const tokenId = await shown.locator("p code").first().textContent();
    check(secret.startsWith("coda_") && tokenId.startsWith("tok_"), "the secret and its id are shown");
    check(await page.getByRole("button", { name: "Copy" }).count() >= 1, "with a copy button");
    await fitsPhone(page, "the tenant's page");
    const row = page.locator(`tr[data-token="${tokenId}"]`);
    check((await row.textContent()).includes("live"), "the issued token is listed, live");
    await row.getByRole("button", { name: `Revoke ${tokenId}…` }).click();
    await row.getByRole("alertdialog").filter({ hasText: "cannot be undone" }).waitFor();
    await row.getByRole("button", { name: "Yes, revoke it" }).click();
    await row.filter({ hasText: "revoked" }).waitFor();
    check(await page.locator("code.secret").filter({ hasText: secret }).count() === 0, "a revoked token's secret is no longer on the page");

    // The revoked token is refused at sign-in, with the reason.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Token").fill(secret);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "revoked" }).waitFor();
    check(await page.evaluate(() => sessionStorage.length) === 0, "the revoked token is not kept");
  });
}

// --- usage over time (issue 16, item 7) ------------------------------------------------------

async function usageJourney({ context, base, acme, token }) {
  await journey("usage", context, async (page) => {
    // A run, so today has invocations.
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "call-usage", channel: "voice", plan: "live", data: {} });
    await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "call-usage", outcome: "none" });
    const deadline = Date.now() + 15_000;
    while ((await acme("GET", "/v1/usage")).invocations === 0) {
      check(Date.now() < deadline, "the run's invocations are counted within 15 s");
      await new Promise((r) => setTimeout(r, 200));
    }
    await signIn(page, base, token);
    // The whole range in one request: the API's hours, added up into the viewer's days.
    const asked = [];
    page.on("request", (req) => {
      if (new URL(req.url()).pathname === "/v1/usage") asked.push(new URL(req.url()).searchParams);
    });
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    const chart = page.locator('figure.chart[data-metric="usage-invocations"]');
    await chart.waitFor();
    check(asked.length === 1 && asked[0].get("bucket") === "hour", `one request for the week, by the hour (${asked.length} made)`);
    const week = await acme("GET", `/v1/usage?since=${asked[0].get("since")}&until=${asked[0].get("until")}`);
    const total = Number((await chart.locator(".chart-total").textContent()).replace(/\D/g, ""));
    check(total > 0, `the invocations chart counts the run (${total})`);
    check(total === week.invocations, `the chart's total is the API's for the window (${total}, ${week.invocations})`);
    check(await chart.locator("rect").count() === 7, "a bar a day, seven days");
    check((await chart.locator("svg title").first().textContent()) === "Invocations per day", "the chart has a title");
    check((await chart.locator("svg desc").textContent()).includes("invocations in all"), "and a description");
    for (const m of ["fuel", "emails", "http", "sql", "follow-ups"]) {
      check(await page.locator(`figure.chart[data-metric="usage-${m}"]`).count() === 1, `a chart of ${m}`);
    }
    const todayBar = chart.locator(".bar rect").last();
    check(/: [1-9][\d,.]* invocations$/.test(await todayBar.locator("title").textContent()), "today's bar says its value");
    // The same numbers as a table.
    await page.getByText("The same as a table").click();
    const lastRow = page.locator(".usage-table tbody tr").last();
    check(Number((await lastRow.locator("td").first().textContent()).replace(/\D/g, "")) === total, "the table gives the same numbers");
    // Another range: a bar a day.
    await page.getByLabel("Range").selectOption("14");
    await page.waitForFunction(() => document.querySelectorAll('figure.chart[data-metric="usage-invocations"] rect').length === 14);
    check(asked.length === 2, `one more request for 14 days (${asked.length} in all)`);
    await fitsPhone(page, "the usage page");
  });
}

// --- interactions (issue 16, item 5) -------------------------------------------------------

async function interactionJourneys({ context, base, token, acme }) {
  await journey("interactions-list", context, async (page) => {
    // Three calls: two by the list skill (one a chat left active), one by another.
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "list-1", channel: "voice", skill: "list-skill", plan: "live", data: {} });
    await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "list-1", outcome: "none" });
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "list-2", channel: "chat", skill: "list-skill", data: {} });
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "list-3", channel: "voice", skill: "other-skill", data: {} });
    await signIn(page, base, token);
    await page.getByRole("link", { name: "Interactions" }).click();
    await page.getByRole("heading", { name: "Interactions" }).waitFor();
    const rows = () => page.locator("tr[data-interaction]").evaluateAll((r) => r.map((x) => x.dataset.interaction));
    await page.locator('tr[data-interaction="list-3"]').waitFor();
    const newest = (await acme("GET", "/v1/interactions?order=newest&limit=25")).interactions.map((i) => i.id);
    check(JSON.stringify(await rows()) === JSON.stringify(newest), "newest first, as the API lists them");
    check((await rows())[0] === "list-3", "the last one seen heads the list");
    // Filters: the skill and the channel, in the address.
    await page.getByLabel("Skill").fill("list-skill");
    await page.getByLabel("Channel").selectOption("chat");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/channel=chat/);
    check(/skill=list-skill/.test(page.url()), "the filters are in the address");
    await page.waitForFunction(() => [...document.querySelectorAll("tr[data-interaction]")].map((r) => r.dataset.interaction).join() === "list-2");
    const row = page.locator('tr[data-interaction="list-2"]');
    check((await row.locator('td[data-label="Status"]').textContent()) === "active", "its status");
    check((await row.locator('td[data-label="Channel"]').textContent()) === "chat", "its channel");
    // Pages of one: the API's `after`, never the whole list.
    await page.goto(`${base}/#/interactions?skill=list-skill&limit=1`);
    await page.waitForFunction(() => document.querySelectorAll("tr[data-interaction]").length === 1);
    const first = await rows();
    await page.getByRole("link", { name: "Next page" }).click();
    await page.waitForURL(/after=/);
    await page.waitForFunction((ids) => {
      const shown = [...document.querySelectorAll("tr[data-interaction]")].map((r) => r.dataset.interaction);
      return shown.length === 1 && !ids.includes(shown[0]);
    }, first);
    check(JSON.stringify([...first, ...(await rows())]) === JSON.stringify(["list-2", "list-1"]), "page by page, newest first");
    // The completed one links to its own page, and its runs to the runs list.
    check((await page.locator('tr[data-interaction="list-1"] td[data-label="Runs"]').textContent()) === "1", "list-1 started one run");
    await page.getByRole("link", { name: "list-1" }).click();
    await page.getByRole("heading", { name: "Interaction list-1" }).waitFor();
    await page.goBack();
    await page.locator('tr[data-interaction="list-1"]').waitFor();
    await fitsPhone(page, "the interactions list");
  });

  await journey("interaction-edit", context, async (page) => {
    await acme("POST", "/v1/interactions/events", { type: "started", interaction: "edit-1", channel: "voice", plan: "live", data: { CLID: "+15550142", CustomerName: "Lin" } });
    const ended = await acme("POST", "/v1/interactions/events", { type: "ended", interaction: "edit-1", outcome: "callback" });
    await signIn(page, base, token);
    // From the run it started to the interaction.
    await page.goto(`${base}/#/runs/${ended.runs[0]}`);
    await page.getByRole("link", { name: "edit-1" }).click();
    await page.getByRole("heading", { name: "Interaction edit-1" }).waitFor();
    check((await page.locator("dl.data").textContent()).includes("+15550142"), "its data sources are shown");
    check((await page.locator("dl.facts").first().textContent()).includes("completed"), "its status is shown");
    await page.getByText("No changes since it completed.").waitFor();
    // Edit two details: the audit history shows each change.
    const form = page.getByRole("form", { name: "Edit details" });
    await form.getByLabel("Subject").fill("Callback about order B-7");
    await form.getByLabel("Customer email").fill("lin@example.com");
    await form.getByRole("button", { name: "Save details" }).click();
    await page.getByText("Saved: subject, customer.").waitFor();
    const audit = page.getByRole("table", { name: "Audit history" });
    await audit.getByText("Callback about order B-7").waitFor();
    check((await audit.textContent()).includes("customer.email"), "the audit names the customer's email");
    check(await audit.locator("tbody tr").count() === 2, "two audit entries");
    const byApi = await acme("GET", "/v1/interactions/edit-1");
    check(byApi.details.subject === "Callback about order B-7", "the edit reached coda");
    // What may not change is read-only; asking coda to change it answers coda's reason.
    const channel = page.getByRole("group", { name: "Kept as it happened (read-only)" }).getByLabel("Channel", { exact: true });
    check(await channel.getAttribute("readonly") !== null, "the channel is read-only");
    await page.getByRole("button", { name: "Try to change channel" }).click();
    const why = page.getByRole("status", { name: "Why read-only" });
    await why.getByText("not-editable").waitFor();
    check((await why.textContent()).includes("`channel` is not editable"), "coda's reason is shown");
    check(await audit.locator("tbody tr").count() === 2, "the refused change left no audit entry");
    // A disposition the interaction does not take: coda's refusal is shown.
    const disposition = page.getByRole("form", { name: "Submit disposition" });
    await disposition.getByLabel("Code").fill("sale");
    await disposition.getByRole("button", { name: "Submit disposition" }).click();
    await disposition.getByText("no-dispositions").waitFor();
    // Clone into a new outbound interaction.
    const clone = page.getByRole("form", { name: "Clone interaction" });
    await clone.getByLabel("Channel").selectOption("email");
    await clone.getByLabel("Queue").fill("callbacks");
    await clone.getByRole("button", { name: "Clone" }).click();
    const made = clone.getByRole("status");
    await made.getByText("Cloned as").waitFor();
    await made.getByRole("link").click();
    await page.getByRole("heading", { name: /^Interaction (?!edit-1$)/ }).waitFor();
    await page.getByText("This interaction is still active").waitFor();
    // At a phone's width the edited one's page fits, its audit as cards.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/#/interactions/edit-1`);
    await page.getByRole("table", { name: "Audit history" }).waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    check(overflow <= 0, `an interaction's page fits the phone's width (overflow ${overflow}px)`);
  });
}

// --- applets, grants and secrets (issue 16, item 6) ----------------------------------------

// An applet that needs a grant (secrets), built against the applet world's first version.
const GRANTED_WASM = resolve(process.env.GRANTED_WASM ?? join(HELLO_WASM, "..", "world_v0_1_0.wasm"));

async function appletJourneys({ context, base, api, op }) {
  // A tenant of its own: these journeys set its ceiling.
  const { token } = await op("POST", "/v1/operator/tenants", { id: "grantco" });
  const tenant = client(api, token);
  await op("PUT", "/v1/operator/tenants/grantco/ceiling", {
    ceiling: { upload_bytes: 120_000, max_secrets: 3, http_hosts: ["api.example.com"] },
  });
  const plan = {
    name: "greets",
    type: "unattended",
    start: "greet",
    nodes: { greet: { applet: "world-v0-1-0@0.1.0", config: {} } },
  };

  await journey("applet-upload-grant", context, async (page) => {
    await signIn(page, base, token);
    await page.goto(`${base}/#/applets`);
    await page.getByRole("heading", { name: "Applets" }).waitFor();
    await page.getByRole("link", { name: "send-email" }).waitFor();
    check((await page.locator("table.list").textContent()).includes("built-in"), "the built-in applets are listed as such");
    const upload = page.getByRole("form", { name: "Upload an applet" });
    await upload.getByText("Upload limit: 117.2 KiB (set by the operator)").waitFor();
    // Past the limit: said before sending. (Not sent here: coda answers 413 from the declared
    // length without reading the body, which `vite preview`'s proxy turns into a 502.)
    await upload.getByLabel(/A component/).setInputFiles(HELLO_WASM);
    await upload.getByText("larger than the limit").waitFor();
    // Not a component: coda's refusal says why.
    await upload.getByLabel(/A component/).setInputFiles({ name: "not-a-component.wasm", mimeType: "application/wasm", buffer: Buffer.from("not wasm at all") });
    await upload.getByRole("button", { name: "Upload" }).click();
    const refusal = upload.getByRole("alert");
    await refusal.waitFor();
    check((await refusal.textContent()).includes("invalid-component"), `the refusal says why: ${await refusal.textContent()}`);
    // Dropped onto the drop zone.
    const bytes = [...readFileSync(GRANTED_WASM)];
    const drop = await page.evaluateHandle((b) => {
      const t = new DataTransfer();
      t.items.add(new File([new Uint8Array(b)], "world_v0_1_0.wasm", { type: "application/wasm" }));
      return t;
    }, bytes);
    await upload.locator(".dropzone").dispatchEvent("drop", { dataTransfer: drop });
    await upload.getByText("world_v0_1_0.wasm").waitFor();
    await upload.getByRole("button", { name: "Upload" }).click();
    await upload.getByText("Installed").waitFor();
    check((await upload.getByRole("status").textContent()).includes("needs secrets"), "what it needs is said");
    const row = page.locator("table.list tr").filter({ has: page.getByRole("link", { name: "world-v0-1-0", exact: true }) });
    await row.locator('td[data-label="Imports"]').getByText("data, secrets").waitFor();
    check((await row.textContent()).includes("unsigned"), "an uploaded component is unsigned");

    // Publishing a plan that uses it is refused: it is not granted secrets.
    let refused = "";
    try { await tenant("PUT", "/v1/plans/greets", plan); } catch (e) { refused = String(e.message); }
    check(refused.includes("not-granted"), `publishing is refused for the missing grant: ${refused}`);

    // A secret to grant, set write-only.
    await page.getByRole("link", { name: "Secrets" }).click();
    const set = page.getByRole("form", { name: "Set a secret" });
    await set.getByLabel("Name").fill("greeting-key");
    await set.getByLabel("Value (write-only)").fill("never-shown-4711");
    await set.getByRole("button", { name: "Store" }).click();
    await page.getByText("Stored greeting-key; its value is not shown again.").waitFor();
    await page.getByRole("table", { name: "Secrets" }).getByText("greeting-key").waitFor();
    check(!(await page.content()).includes("never-shown-4711"), "the value is not shown back");

    // The grant editor: beyond the ceiling is refused with each field; within it, saved.
    await page.goto(`${base}/#/applets/world-v0-1-0`);
    const v = page.getByRole("article", { name: "world-v0-1-0@0.1.0" });
    await v.getByText("secrets", { exact: true }).first().waitFor();
    check((await v.textContent()).includes("Imports"), "what it imports is shown");
    const grant = page.getByRole("form", { name: "Grant for world-v0-1-0" });
    await grant.getByText("The ceiling allows: api.example.com").waitFor();
    await grant.getByLabel(/HTTP hosts/).fill("evil.example.net");
    await grant.getByLabel(/Send email/).check();
    await grant.getByLabel(/Secrets/).fill("greeting-key");
    await grant.getByRole("button", { name: "Save grant" }).click();
    await grant.getByText("exceeds-ceiling").waitFor();
    const problems = await grant.getByRole("list", { name: "Problems" }).textContent();
    check(problems.includes("evil.example.net") && problems.includes("email"), `each field past the ceiling: ${problems}`);
    await grant.getByLabel(/HTTP hosts/).fill("");
    await grant.getByLabel(/Send email/).uncheck();
    await grant.getByRole("button", { name: "Save grant" }).click();
    await grant.getByText("Saved the grant for world-v0-1-0.").waitFor();
    await grant.getByText("Granted now:").waitFor();
    const granted = await tenant("GET", "/v1/grants");
    check(granted.grants.some((g) => g.applet === "world-v0-1-0" && g.grant.secrets.includes("greeting-key")), "the grant reached coda");

    // Now the plan publishes.
    const published = await tenant("PUT", "/v1/plans/greets", plan);
    check(published.version === 1 || published.plan === "greets", `the plan publishes: ${JSON.stringify(published)}`);

    // Retire the version: the catalog says so.
    await v.getByRole("button", { name: "Retire…" }).click();
    await v.getByRole("button", { name: "Retire 0.1.0" }).click();
    await v.getByRole("heading", { name: /retired/ }).waitFor();
  });

  await journey("applet-pages-phone", context, async (page) => {
    await page.setViewportSize({ width: 390, height: 844 });
    await signIn(page, base, token);
    for (const [path, ready] of [["applets", "table.list"], ["applets/send-email", "dl.facts"], ["secrets", "form"]]) {
      await page.goto(`${base}/#/${path}`);
      await page.locator(ready).first().waitFor();
      await page.waitForLoadState("networkidle");
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
      check(overflow <= 0, `#/${path} fits the phone's width (overflow ${overflow}px)`);
    }
    await page.getByRole("heading", { name: "Secrets" }).waitFor();
  });

  await journey("secrets-delete", context, async (page) => {
    await tenant("PUT", "/v1/secrets/greeting-key", { value: "another-value" });
    await signIn(page, base, token);
    await page.goto(`${base}/#/secrets`);
    const table = page.getByRole("table", { name: "Secrets" });
    await table.getByText("greeting-key").waitFor();
    await page.getByRole("button", { name: "Delete greeting-key…" }).click();
    await page.getByRole("button", { name: "Delete greeting-key", exact: true }).click();
    await page.getByText("Deleted greeting-key.").waitFor();
    await page.getByText("No secrets yet.").waitFor();
  });
}

let ok = false;
try {
  ok = await main();
} catch (e) {
  console.error(`FAIL setup: ${e.stack ?? e}`);
} finally {
  for (const c of cleanups) await Promise.resolve().then(c).catch(() => {});
}
console.error(ok ? `all ${results.length} journeys passed` : "some journeys failed");
process.exit(ok ? 0 : 1);
