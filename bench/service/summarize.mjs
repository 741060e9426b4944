// Turns the load generator's JSON lines (raw.jsonl) into the side-by-side table of
// BENCHMARKS.md: per concurrency, the median of the repetitions of each target.
// usage: node summarize.mjs raw.jsonl
import fs from "node:fs";

const rows = fs.readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pick = (target, mode, c) => rows.filter((r) => r.target === target && r.mode === mode && r.concurrency === c);
const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "—");
const server = (r) => r.procs?.server ?? {};

const concurrencies = [...new Set(rows.filter((r) => r.mode === "closed").map((r) => r.concurrency))].sort((a, b) => a - b);
console.log("| clients | coda workflows/s | Restate workflows/s | coda / Restate | coda p99 | Restate p99 | coda KiB written / workflow | Restate KiB written / workflow | coda CPU ms / workflow (server) | Restate CPU ms / workflow (server + service) | errors, duplicate calls |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
for (const c of concurrencies) {
  const coda = pick("coda", "closed", c);
  const restate = pick("restate", "closed", c);
  const cw = median(coda.map((r) => r.workflowsPerSec));
  const rw = median(restate.map((r) => r.workflowsPerSec));
  const problems = [...coda, ...restate].reduce((n, r) => n + r.errors + (r.loopback?.duplicates ?? 0) + (r.loopback?.missingKey ?? 0), 0);
  console.log(
    `| ${c} | ${fmt(cw)} | ${fmt(rw)} | ${fmt(cw / rw, 1)}× | ${fmt(median(coda.map((r) => r.latencyMs?.p99)))} ms | ${fmt(median(restate.map((r) => r.latencyMs?.p99)))} ms | ` +
      `${fmt(median(coda.map((r) => server(r).writtenKiBPerWorkflow)), 1)} | ${fmt(median(restate.map((r) => server(r).writtenKiBPerWorkflow)), 1)} | ` +
      `${fmt(median(coda.map((r) => server(r).cpuMsPerWorkflow)), 2)} | ${fmt(median(restate.map((r) => (server(r).cpuMsPerWorkflow ?? NaN) + (r.procs?.service?.cpuMsPerWorkflow ?? 0))), 2)} | ${problems} |`
  );
}
const open = rows.filter((r) => r.mode === "open");
if (open.length) {
  console.log("");
  console.log(`Open loop (coda, ${open[0].n} runs, ${open[0].concurrency} requests in flight): ` +
    `${fmt(median(open.map((r) => r.workflowsPerSec)))} runs/s finished, events acknowledged at ${fmt(median(open.map((r) => r.acknowledgedPerSec)))}/s; ` +
    `${fmt(median(open.map((r) => server(r).writtenKiBPerWorkflow)), 1)} KiB written per run; repetitions: ${open.map((r) => fmt(r.workflowsPerSec)).join(", ")}`);
}
