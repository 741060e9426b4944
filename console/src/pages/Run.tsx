// One run: where it is, its path drawn on its plan's graph, and its timeline (each step's
// node, applet, attempt, exit or error, duration, fuel, data changes, logs and effects with
// their idempotency keys). While it runs, its live tail adds steps as they commit.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api } from "../api/client";
import {
  whereNow,
  type AppletVersion,
  type Effect,
  type PlanVersion,
  type RunDetail,
  type Step,
} from "../api/model";
import { appletsOf } from "../applets";
import { edgeKey, PlanGraph, type RunPath } from "../graph";
import { href } from "../route";
import { tailRun } from "../tail";
import { duration, number, Time } from "../time";
import { ErrorNote, JsonText, Loading, Page, Status } from "../ui";

const FINISHED = new Set(["done", "failed", "cancelled"]);

/// What a step's result says it did, in a few words.
export function outcome(step: Step): { text: string; error: boolean } {
  const r = step.result as Record<string, any>;
  if (r.error) {
    const e = r.error as { kind?: string; code?: string; message?: string };
    return {
      text: `error ${[e.kind, e.code].filter(Boolean).join(" ")}${e.message ? `: ${e.message}` : ""}`,
      error: true,
    };
  }
  if (typeof r.exit === "string") return { text: `exit ${r.exit}`, error: false };
  if (r.pause) return { text: `pause ${r.pause.millis} ms, then exit ${r.pause.exit}`, error: false };
  if (r.wait) return { text: `wait for event ${r.wait.event}`, error: false };
  if (r.route) return { text: `route to plan ${r.route.plan}`, error: false };
  if (r.cancelled) return { text: "cancelled", error: false };
  if (r.end) return { text: "the run ends", error: false };
  if (typeof r.event === "string") return { text: `event ${r.event} received`, error: false };
  if (r.timeout !== undefined) return { text: `timed out waiting for ${r.timeout}`, error: false };
  return { text: JSON.stringify(r), error: false };
}

/// The run's path over one plan version: nodes stepped on, exits taken.
function pathOf(run: RunDetail, steps: Step[], plan: PlanVersion): RunPath {
  const visits = new Map<string, number>();
  const taken = new Set<string>();
  const waits = new Map<string, { on_event: string; on_timeout: string }>();
  let failed: string | null = null;
  for (const s of steps) {
    if (s.plan !== plan.plan || s.plan_version !== plan.version || !s.node) continue;
    const r = s.result as Record<string, any>;
    if (s.applet) visits.set(s.node, (visits.get(s.node) ?? 0) + 1);
    if (typeof r.exit === "string") taken.add(edgeKey(s.node, r.exit));
    else if (r.pause) taken.add(edgeKey(s.node, r.pause.exit));
    else if (r.wait) waits.set(s.node, r.wait);
    else if (r.timeout !== undefined) {
      const w = waits.get(s.node);
      if (w) taken.add(edgeKey(s.node, w.on_timeout));
    } else if (r.error) {
      if (plan.body.nodes[s.node]?.error) taken.add(edgeKey(s.node, "error"));
      failed = s.node;
    } else if (!s.applet) {
      // The event a wait was for arrived.
      const w = waits.get(s.node);
      if (w) taken.add(edgeKey(s.node, w.on_event));
    }
  }
  if (run.status !== "failed") failed = null;
  const current = whereNow(run);
  return { visits, taken, current, failed };
}

function WaitNote({ run }: { run: RunDetail }) {
  if (run.status === "parked") {
    return (
      <p class="waitnote" role="status">
        Parked at <strong>{run.node ?? "its end"}</strong>: resumes at <Time ms={run.due_at_ms} />.
      </p>
    );
  }
  if (run.status === "waiting" && run.wait) {
    return (
      <p class="waitnote" role="status">
        Waiting at <strong>{run.wait.node ?? run.node ?? "—"}</strong> for the event{" "}
        <strong>{run.wait.event}</strong>
        {run.due_at_ms ? (
          <>
            {" "}
            until <Time ms={run.due_at_ms} />
          </>
        ) : null}
        .
      </p>
    );
  }
  return null;
}

/// Bytes the API sends as base64, shown as the text they hold (invalid UTF-8 replaced).
function base64Text(b64: string): string {
  try {
    const raw = atob(b64);
    const bytes = Uint8Array.from(raw, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  } catch {
    return b64;
  }
}

/// What a call got back. An HTTP response: its status, headers and body as text.
function EffectResult({ effect }: { effect: Effect }) {
  const r = effect.result as { Ok?: { status?: number; headers?: [string, string][]; body?: string } };
  const ok = r?.Ok;
  if (effect.kind === "http" && ok && typeof ok.body === "string") {
    return (
      <div class="http-response">
        <div>
          HTTP <strong>{ok.status ?? "?"}</strong>
        </div>
        {ok.headers?.length ? (
          <details>
            <summary>{ok.headers.length} headers</summary>
            <dl class="data">
              {ok.headers.map(([k, v], i) => (
                <div key={i}>
                  <dt>{k}</dt>
                  <dd>{v}</dd>
                </div>
              ))}
            </dl>
          </details>
        ) : null}
        <pre class="json">{base64Text(ok.body)}</pre>
      </div>
    );
  }
  return <JsonText value={effect.result} />;
}

function StepCard({ run, step, effects }: { run: string; step: Step; effects: Effect[] }) {
  const o = outcome(step);
  const changes = Object.entries(step.data_changes ?? {});
  return (
    <li class={`step${o.error ? " step-error" : ""}`} data-seq={step.seq}>
      <div class="step-head">
        <span class="seq">#{step.seq}</span>
        <strong class="step-node">{step.node || "(host)"}</strong>
        <span class="step-applet">{step.applet || "host step"}</span>
        <span class="attempt">attempt {step.attempt}</span>
        <span class={o.error ? "outcome error-text" : "outcome"}>{o.text}</span>
      </div>
      <div class="step-meta">
        <span>{step.note}</span>
        <span>{duration(step.duration_us)}</span>
        <span>{number(step.fuel_used)} fuel</span>
        <Time ms={step.at_ms} />
      </div>
      {changes.length ? (
        <div class="step-section">
          <h4>Data changes</h4>
          <dl class="data">
            {changes.map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{typeof v === "string" ? v : JSON.stringify(v)}</dd>
              </div>
            ))}
          </dl>
        </div>
      ) : null}
      {step.logs?.length ? (
        <div class="step-section">
          <h4>Logs</h4>
          <ol class="logs">
            {step.logs.map((l, i) => (
              <li key={i} class={`log log-${l.level}`}>
                <span class="level">{l.level}</span> <span class="message">{l.message}</span>
              </li>
            ))}
          </ol>
        </div>
      ) : null}
      {effects.length ? (
        <div class="step-section">
          <h4>Effects</h4>
          <ol class="effects">
            {effects.map((e) => (
              <li key={`${e.step_seq}/${e.call_seq}`}>
                <span>
                  call {e.call_seq}: <strong>{e.kind}</strong>
                </span>{" "}
                <span class="muted">step key</span> <code class="step-key">{e.step_key}</code>{" "}
                <span class="muted" title="sent by the host when the request sets no Idempotency-Key">call key</span>{" "}
                <code class="call-key">{e.call_key}</code>{" "}
                <code title={e.digest}>{e.digest.slice(0, 16)}…</code> <Time ms={e.at_ms} />
                <EffectResult effect={e} />
              </li>
            ))}
          </ol>
        </div>
      ) : null}
    </li>
  );
}

/// Cancel a run not finished, retry a failed one from its failed step: each asks first, on
/// the page (no browser dialog), saying what it will do.
function RunActions({ run, failedAt, done }: { run: RunDetail; failedAt: string | null; done: () => void }) {
  const [asking, setAsking] = useState<"cancel" | "retry" | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const action = FINISHED.has(run.status) ? (run.status === "failed" ? "retry" : null) : "cancel";
  if (!action) return null;
  const act = async () => {
    setBusy(true);
    setError(null);
    try {
      if (asking === "cancel") await api.post("/v1/runs/{id}/cancel", { path: { id: run.id } });
      else await api.post("/v1/runs/{id}/retry", { path: { id: run.id } });
      setAsking(null);
      done();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="run-actions">
      {asking === null ? (
        <button type="button" class="secondary" onClick={() => setAsking(action)}>
          {action === "cancel" ? "Cancel run…" : "Retry from the failed step…"}
        </button>
      ) : (
        <div class="confirm" role="alertdialog" aria-labelledby="confirm-text">
          <p id="confirm-text">
            {asking === "cancel"
              ? "Cancel this run? It stops where it is; the steps it took stay done."
              : `Retry this run? Node ${failedAt ?? "—"} runs again, with the run's data as it is now.`}
          </p>
          <button type="button" onClick={act} disabled={busy} autoFocus>
            {asking === "cancel" ? "Yes, cancel it" : "Yes, retry it"}
          </button>{" "}
          <button type="button" class="secondary" onClick={() => setAsking(null)} disabled={busy}>
            {asking === "cancel" ? "Keep it running" : "Leave it failed"}
          </button>
        </div>
      )}
      <ErrorNote error={error} />
    </div>
  );
}

export function Run({ id }: { id: string }) {
  const [run, setRun] = useState<RunDetail | null>(null);
  const [steps, setSteps] = useState<Map<number, Step>>(new Map());
  const [plan, setPlan] = useState<{ version: PlanVersion; applets: Map<string, AppletVersion> } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState<"off" | "on" | "ended">("off");
  const [tailError, setTailError] = useState<string | null>(null);
  const refresh = useRef<() => void>(() => {});
  // Bumped after a cancel or a retry: the page loads the run again (and follows it live).
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stop: (() => void) | null = null;
    setRun(null);
    setSteps(new Map());
    setPlan(null);
    setError(null);
    const load = async () => {
      try {
        const r = await api.get("/v1/runs/{id}", { path: { id }, signal: abort.signal });
        setRun(r);
        setSteps((old) => {
          const next = new Map(old);
          for (const s of r.journal) next.set(s.seq, s);
          return next;
        });
        return r;
      } catch (e) {
        if ((e as Error).name !== "AbortError") setError(e);
        return null;
      }
    };
    // While it runs, each step committed brings the run's record too (status, node, data),
    // at most a few times a second.
    refresh.current = () => {
      clearTimeout(timer);
      timer = setTimeout(() => void load(), 250);
    };
    void (async () => {
      const r = await load();
      if (!r) return;
      try {
        const version = await api.get("/v1/plans/{name}/versions/{version}", {
          path: { name: r.plan, version: r.plan_version },
          signal: abort.signal,
        });
        setPlan({ version, applets: await appletsOf(version.body) });
      } catch (e) {
        if ((e as Error).name !== "AbortError") setError(e);
      }
      if (FINISHED.has(r.status) || abort.signal.aborted) {
        setLive("ended");
        return;
      }
      setLive("on");
      stop = tailRun(id, {
        step(s) {
          setTailError(null);
          setSteps((old) => new Map(old).set(s.seq, s));
          refresh.current();
        },
        end() {
          setLive("ended");
          void load();
        },
        error(message) {
          setTailError(message);
        },
      });
    })();
    return () => {
      abort.abort();
      clearTimeout(timer);
      stop?.();
    };
  }, [id, generation]);

  const ordered = useMemo(() => [...steps.values()].sort((a, b) => a.seq - b.seq), [steps]);
  const path = useMemo(
    () => (run && plan ? pathOf(run, ordered, plan.version) : undefined),
    [run, plan, ordered],
  );
  const effectsBy = useMemo(() => {
    const m = new Map<number, Effect[]>();
    for (const e of run?.effects ?? []) m.set(e.step_seq, [...(m.get(e.step_seq) ?? []), e]);
    return m;
  }, [run]);

  return (
    <Page title={`Run ${id}`}>
      <ErrorNote error={error} />
      {!run && !error ? <Loading what="the run" /> : null}
      {run ? (
        <>
          <dl class="facts">
            <dt>Status</dt>
            <dd>
              <Status status={run.status} />{" "}
              <span class="live" role="status" aria-live="polite">
                {live === "on" ? "live: steps appear as they commit" : ""}
              </span>
            </dd>
            <dt>Plan</dt>
            <dd>
              <a href={href(["plans", run.plan], { version: String(run.plan_version) })}>
                {run.plan}@{run.plan_version}
              </a>
            </dd>
            <dt>Interaction</dt>
            <dd>{run.interaction ? <a href={href(["interactions", run.interaction])}>{run.interaction}</a> : "—"}</dd>
            <dt>Node</dt>
            <dd>{whereNow(run) ?? "—"}</dd>
            <dt>Started</dt>
            <dd>
              <Time ms={run.created_at_ms} />
            </dd>
            <dt>Updated</dt>
            <dd>
              <Time ms={run.updated_at_ms} />
            </dd>
          </dl>
          <WaitNote run={run} />
          <RunActions run={run} failedAt={path?.failed ?? null} done={() => setGeneration((g) => g + 1)} />
          {tailError ? <p class="error" role="alert">{tailError}</p> : null}
          {plan ? (
            <PlanGraph plan={plan.version.body} applets={plan.applets} path={path} />
          ) : null}
          <h2>Timeline</h2>
          {ordered.length === 0 ? <p class="muted">No step yet.</p> : null}
          <ol class="timeline" aria-label="Steps, in order">
            {ordered.map((s) => (
              <StepCard key={s.seq} run={run.id} step={s} effects={effectsBy.get(s.seq) ?? []} />
            ))}
          </ol>
          <h2>Data</h2>
          <dl class="data" aria-label="The run's data sources">
            {Object.entries(run.data ?? {}).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{typeof v === "string" ? v : JSON.stringify(v)}</dd>
              </div>
            ))}
          </dl>
        </>
      ) : null}
    </Page>
  );
}
