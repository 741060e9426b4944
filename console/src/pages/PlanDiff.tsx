// Two versions of a plan compared: the nodes added, removed and changed marked on one
// graph (the newer version's, with the removed nodes drawn back in where they were wired),
// and what changed on each node (applet version, config, exits, error exit) listed beside.
// The server says what changed (`GET /v1/plans/{name}/diff`); both bodies give the detail.
import { useState } from "preact/hooks";
import { api } from "../api/client";
import type { FieldChange, PlanBody, PlanDiff, PlanNode, PlanVersions } from "../api/model";
import { appletsOf } from "../applets";
import { PlanGraph, type NodeMark } from "../graph";
import { ErrorNote, JsonText, Loading, useLoad } from "../ui";

const LEGEND = [
  { kind: "added", badge: "+", label: "added" },
  { kind: "changed", badge: "~", label: "changed" },
  { kind: "removed", badge: "−", label: "removed (drawn where it was)" },
];

export function VersionDiff({ name, versions }: { name: string; versions: PlanVersions["versions"] }) {
  const numbers = versions.map((v) => v.version).sort((a, b) => a - b);
  const last = numbers[numbers.length - 1] ?? 1;
  const [from, setFrom] = useState(numbers[numbers.length - 2] ?? last);
  const [to, setTo] = useState(last);
  const [shown, setShown] = useState<{ from: number; to: number } | null>(null);
  if (numbers.length < 2) return <p class="muted">One version so far: nothing to compare.</p>;
  return (
    <section aria-labelledby="compare-title">
      <h2 id="compare-title">Compare versions</h2>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          setShown({ from, to });
        }}
      >
        <label>
          From version
          <select value={from} onChange={(e) => setFrom(Number((e.target as HTMLSelectElement).value))}>
            {numbers.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
        <label>
          To version
          <select value={to} onChange={(e) => setTo(Number((e.target as HTMLSelectElement).value))}>
            {numbers.map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
        <button type="submit">Compare</button>
      </form>
      {shown ? <DiffView key={`${shown.from}-${shown.to}`} name={name} from={shown.from} to={shown.to} /> : null}
    </section>
  );
}

function DiffView({ name, from, to }: { name: string; from: number; to: number }) {
  const loaded = useLoad(
    async (signal) => {
      const [diff, a, b] = await Promise.all([
        api.get("/v1/plans/{name}/diff", { path: { name }, query: { from, to }, signal }),
        api.get("/v1/plans/{name}/versions/{version}", { path: { name, version: from }, signal }),
        api.get("/v1/plans/{name}/versions/{version}", { path: { name, version: to }, signal }),
      ]);
      const merged = mergedPlan(a.body, b.body);
      return { diff, old: a.body, now: b.body, merged, applets: await appletsOf(merged) };
    },
    [name, from, to],
  );
  if (loaded.error) return <ErrorNote error={loaded.error} />;
  if (!loaded.value) return <Loading what="the difference" />;
  const { diff, old, now, merged, applets } = loaded.value;
  const s = diff.summary;
  if (diff.identical) {
    return <p class="notice" role="status">Versions {from} and {to} are identical.</p>;
  }
  const marks = new Map<string, NodeMark>();
  for (const id of s?.nodes_added ?? []) marks.set(id, { kind: "added", badge: "+", note: `added in version ${to}` });
  for (const id of s?.nodes_removed ?? []) marks.set(id, { kind: "removed", badge: "−", note: `removed in version ${to}` });
  for (const c of s?.nodes_changed ?? []) {
    marks.set(c.node, { kind: "changed", badge: "~", note: `changed in version ${to}: ${c.changed.join(", ")}` });
  }
  const planFields = s
    ? (["start", "type", "post_interaction", "description"] as const).filter((f) => s[f] !== null)
    : [];
  return (
    <div class="diff">
      <p role="status">
        From version {from} to {to}: {count(s?.nodes_added.length ?? 0, "node")} added,{" "}
        {s?.nodes_removed.length ?? 0} removed, {s?.nodes_changed.length ?? 0} changed.
      </p>
      <div class="split">
        <PlanGraph plan={merged} applets={applets} marks={marks} markLegend={LEGEND} />
        <aside class="detail" aria-label="What changed">
          <h3>What changed</h3>
          <ul class="changes">
            {planFields.map((f) => (
              <li key={f}>
                <strong>plan {f}</strong>: {fieldChange(s![f]!)}
              </li>
            ))}
            {(s?.nodes_added ?? []).map((id) => (
              <li key={`+${id}`} class="change-added">
                <strong>node {id}</strong> added: {now.nodes[id]?.applet}
                <Exits node={now.nodes[id]} />
              </li>
            ))}
            {(s?.nodes_removed ?? []).map((id) => (
              <li key={`-${id}`} class="change-removed">
                <strong>node {id}</strong> removed (was {old.nodes[id]?.applet})
              </li>
            ))}
            {(s?.nodes_changed ?? []).map((c) => (
              <li key={`~${c.node}`} class="change-changed">
                <strong>node {c.node}</strong> changed
                <NodeChanges before={old.nodes[c.node]!} after={now.nodes[c.node]!} fields={c.changed} />
              </li>
            ))}
          </ul>
          {s === null ? <p class="muted">A version no longer reads as a plan: only the text diff is shown.</p> : null}
        </aside>
      </div>
      <details>
        <summary>The stored bodies as a text diff</summary>
        <pre class="json">{diff.unified}</pre>
      </details>
    </div>
  );
}

function NodeChanges({ before, after, fields }: { before: PlanNode; after: PlanNode; fields: string[] }) {
  return (
    <dl class="change-detail">
      {fields.includes("applet") || fields.includes("version") ? (
        <>
          <dt>Applet</dt>
          <dd>{before.applet} → {after.applet}</dd>
        </>
      ) : null}
      {fields.includes("exits") ? (
        <>
          <dt>Exits</dt>
          <dd>
            <ul class="plain">
              {exitChanges(before.exits ?? {}, after.exits ?? {}).map((line) => <li key={line}>{line}</li>)}
            </ul>
          </dd>
        </>
      ) : null}
      {fields.includes("error") ? (
        <>
          <dt>On error</dt>
          <dd>{before.error ?? "the run fails"} → {after.error ?? "the run fails"}</dd>
        </>
      ) : null}
      {fields.includes("config") ? (
        <>
          <dt>Config</dt>
          <dd>
            <span class="muted">before</span>
            <JsonText value={before.config ?? {}} />
            <span class="muted">after</span>
            <JsonText value={after.config ?? {}} />
          </dd>
        </>
      ) : null}
    </dl>
  );
}

function Exits({ node }: { node: PlanNode | undefined }) {
  const exits = Object.entries(node?.exits ?? {});
  return exits.length ? <span class="muted"> ({exits.map(([e, t]) => `${e} → ${t}`).join(", ")})</span> : null;
}

export function exitChanges(before: Record<string, string>, after: Record<string, string>): string[] {
  const out: string[] = [];
  for (const exit of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const a = before[exit];
    const b = after[exit];
    if (a === b) continue;
    if (a === undefined) out.push(`${exit}: now → ${b}`);
    else if (b === undefined) out.push(`${exit}: was → ${a}, now ends the run`);
    else out.push(`${exit}: ${a} → ${b}`);
  }
  return out;
}

function fieldChange(c: FieldChange): string {
  const show = (v: unknown) => (v === null || v === undefined ? "none" : typeof v === "string" ? v : JSON.stringify(v));
  return `${show(c.from)} → ${show(c.to)}`;
}

function count(n: number, what: string) {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}

/// The newer version's plan with the removed nodes added back (their wires as they were),
/// so that one graph shows all three kinds of change.
function mergedPlan(old: PlanBody, now: PlanBody): PlanBody {
  const nodes = { ...now.nodes };
  for (const [id, node] of Object.entries(old.nodes)) if (!(id in nodes)) nodes[id] = node;
  return { ...now, nodes };
}
