// Intake throughput per adapter (BENCHMARKS.md, "Platform intake"): a real `coda serve`
// on loopback with a throwaway data directory, one tenant with a connection per platform,
// and each platform's documented payloads (host/intake/testdata) replayed as the platform
// sends them, each interaction's ids its own: a start, then an end that starts the
// post-interaction run. Twilio's deliveries are signed here with node's own HMAC-SHA1 (an
// implementation independent of coda's), the others carry the connection's key header.
//
// Prints, per adapter, events/s over the whole batch (C deliveries in flight) and the
// latency percentiles of a delivery, as one JSON line each, then a table.
//
// usage: node bench/intake/run.mjs [--bin target/release/coda] [--n 2000] [--c 16]
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
const BIN = path.resolve(ROOT, args.bin ?? "target/release/coda");
const N = parseInt(args.n ?? "2000"); // interactions per adapter: 2 events each
const C = parseInt(args.c ?? "16");
const TESTDATA = path.join(ROOT, "host/intake/testdata");
const OPERATOR = "bench-operator-" + crypto.randomBytes(16).toString("hex");
const KEY = "bench-key-" + crypto.randomBytes(16).toString("hex");
const TWILIO_TOKEN = "bench-twilio-" + crypto.randomBytes(16).toString("hex");

const agent = new http.Agent({ keepAlive: true, maxSockets: C + 4 });
let base;
let tenantToken;

function request(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(url, base), { method, agent, headers }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

async function api(method, url, token, json) {
  const body = json === undefined ? undefined : JSON.stringify(json);
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const res = await request(method, url, body, headers);
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.body}`);
  return res.body ? JSON.parse(res.body) : null;
}

async function start() {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), "coda-intake-bench-"));
  const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0"], {
    env: { ...process.env, CODA_DATA_DIR: data, CODA_OPERATOR_TOKEN: OPERATOR, CODA_LOG: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const address = await new Promise((resolve, reject) => {
    let text = "";
    child.stderr.on("data", (chunk) => {
      text += chunk;
      const found = text.match(/listening on (http:\/\/\S+)/);
      if (found) resolve(found[1]);
    });
    child.on("exit", (code) => reject(new Error(`coda serve exited ${code}: ${text}`)));
  });
  child.stderr.resume();
  return { child, address, data };
}

// One interaction's start and end for each platform, its ids made unique by `i`.
const twilioForm = (file, task) =>
  fs.readFileSync(path.join(TESTDATA, "twilio", file), "utf8").replaceAll("WT00000000000000000000000000000001", task);
const json = (dir, file) => fs.readFileSync(path.join(TESTDATA, dir, file), "utf8");
const PLATFORMS = {
  twilio: {
    events: (i) => {
      const task = "WT" + i.toString(16).padStart(32, "0");
      return [twilioForm("task-created.txt", task), twilioForm("task-wrapup.txt", task)];
    },
    contentType: "application/x-www-form-urlencoded",
  },
  "amazon-connect": {
    events: (i) => {
      const id = `b0000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
      return ["initiated.json", "disconnected.json"].map((f) =>
        json("amazon-connect", f).replaceAll("11111111-1111-1111-1111-111111111111", id));
    },
    contentType: "application/json",
  },
  genesys: {
    events: (i) => {
      const id = `c0000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`;
      return ["customer-start.json", "customer-end.json"].map((f) =>
        json("genesys", f).replaceAll("7f1c7a52-1f36-4cfe-a2a5-0d5a6a0c3b11", id));
    },
    contentType: "application/json",
  },
  // The baseline: coda's own events on `POST /v1/interactions/events`, with the tenant's
  // token, the same interaction each adapter makes (the intake's cost is the difference).
  "coda-events": {
    events: (i) => [
      JSON.stringify({ type: "started", interaction: `bench-native-${i}`, channel: "voice", plan: "live",
        data: { CLID: "+15555550100", DialedNumber: "+15555550199" } }),
      JSON.stringify({ type: "ended", interaction: `bench-native-${i}` }),
    ],
    contentType: "application/json",
  },
  cloudevents: {
    events: (i) =>
      ["started.json", "ended.json"].map((f) =>
        json("cloudevents", f).replaceAll("call-20261207-0001", `bench-call-${i}`)),
    contentType: "application/cloudevents+json",
  },
};

// Twilio's signature: the URL, then each parameter's name and value, sorted by name.
function twilioSignature(url, form) {
  const params = [...new URLSearchParams(form)].sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  const hmac = crypto.createHmac("sha1", TWILIO_TOKEN);
  hmac.update(url);
  for (const [name, value] of params) hmac.update(name + value);
  return hmac.digest("base64");
}

async function deliver(platform, deliveryPath, body) {
  const headers = { "content-type": PLATFORMS[platform].contentType };
  if (platform === "coda-events") headers.authorization = `Bearer ${tenantToken}`;
  else if (platform === "twilio") headers["x-twilio-signature"] = twilioSignature(new URL(deliveryPath, base).href, body);
  else headers["x-coda-key"] = KEY;
  const t0 = process.hrtime.bigint();
  const res = await request("POST", deliveryPath, body, headers);
  const micros = Number(process.hrtime.bigint() - t0) / 1000;
  if (res.status !== 200) throw new Error(`${platform}: ${res.status} ${res.body}`);
  return micros;
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function main() {
  const server = await start();
  base = server.address;
  try {
    const tenant = (await api("POST", "/v1/operator/tenants", OPERATOR, { id: "bench" })).token;
    tenantToken = tenant;
    await api("PUT", "/v1/operator/tenants/bench/ceiling", OPERATOR, { ceiling: { max_secrets: 5 } });
    await api("PUT", "/v1/secrets/key", tenant, { value: KEY });
    await api("PUT", "/v1/secrets/twilio-token", tenant, { value: TWILIO_TOKEN });
    const setData = { applet: "set-data@0.1.0", config: { set: [{ name: "Thanked", value: "yes" }] } };
    await api("PUT", "/v1/plans/after", tenant, { name: "after", type: "unattended", start: "a", nodes: { a: setData } });
    await api("PUT", "/v1/plans/live", tenant, { name: "live", type: "default", start: "a", post_interaction: "after", nodes: { a: setData } });
    const paths = { "coda-events": "/v1/interactions/events" };
    for (const platform of Object.keys(PLATFORMS).filter((p) => p !== "coda-events")) {
      const config = platform === "twilio"
        ? { adapter: "twilio", secret: "twilio-token", plan: "live" }
        : { adapter: platform, secret: "key", header: "x-coda-key", plan: "live" };
      paths[platform] = (await api("PUT", `/v1/intake/connections/${platform}`, tenant, config)).path;
    }
    const rows = [];
    for (const platform of Object.keys(PLATFORMS)) {
      const latencies = [];
      let next = 0;
      const t0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: C }, async () => {
        for (let i = next++; i < N; i = next++) {
          for (const body of PLATFORMS[platform].events(i)) latencies.push(await deliver(platform, paths[platform], body));
        }
      }));
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      latencies.sort((a, b) => a - b);
      const row = {
        adapter: platform, events: latencies.length, seconds: +seconds.toFixed(2),
        events_per_s: Math.round(latencies.length / seconds),
        p50_ms: +(percentile(latencies, 50) / 1000).toFixed(2), p99_ms: +(percentile(latencies, 99) / 1000).toFixed(2),
      };
      console.log(JSON.stringify(row));
      rows.push(row);
    }
    console.log(`\n| adapter | events | events/s | p50 ms | p99 ms |\n|---|---|---|---|---|`);
    for (const r of rows) console.log(`| ${r.adapter} | ${r.events} | ${r.events_per_s} | ${r.p50_ms} | ${r.p99_ms} |`);
  } finally {
    server.child.kill("SIGTERM");
    await new Promise((r) => server.child.on("exit", r));
    fs.rmSync(server.data, { recursive: true, force: true });
  }
}

await main();
