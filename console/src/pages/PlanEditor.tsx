// The plan editor: the plan's text (YAML or JSON) beside its graph, checked as you type by
// the server (`POST /v1/plans/validate`, the very checks a publish makes, grants included)
// with every problem pinned to its node on the graph and listed by field beside the text;
// and Publish (`PUT /v1/plans/{name}`), which shows the new version or why it was refused.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, ApiError, type Problem } from "../api/client";
import type { AppletVersion, PlanBody } from "../api/model";
import { appletsOf } from "../applets";
import { CodeText, goToLine } from "../editor/CodeText";
import { contentType, formatOf, lineOf, planToYaml, readPlan } from "../editor/planText";
import { PlanGraph, type NodeMark } from "../graph";
import { href } from "../route";
import { ErrorNote, Loading, Page, useLoad } from "../ui";

const CHECK_AFTER_MS = 400; // a pause in typing, not every key

const NEW_PLAN = `name: my-plan
type: unattended
description: What this plan does
start: first
nodes:
  first:
    applet: set-data@0.1.0
    config:
      set:
        - name: Checked
          value: "yes"
`;

type Check =
  | { state: "checking" }
  | { state: "valid" }
  | { state: "invalid"; problems: Problem[]; message: string }
  | { state: "failed"; error: unknown };

/// `name` null: a new plan; else a new version of `name`, starting from its latest.
export function PlanEditor({ name }: { name: string | null }) {
  const latest = useLoad(
    async (signal) => {
      if (name === null) return { text: NEW_PLAN, version: null };
      const plan = await api.get("/v1/plans/{name}", { path: { name }, signal });
      return { text: await planToYaml(plan.body), version: plan.version };
    },
    [name],
  );
  const title = name === null ? "New plan" : `Edit plan ${name}`;
  if (latest.error) {
    return (
      <Page title={title}>
        <ErrorNote error={latest.error} />
      </Page>
    );
  }
  if (latest.loading && !latest.value) {
    return (
      <Page title={title}>
        <Loading what="the plan" />
      </Page>
    );
  }
  return (
    <Editor
      key={name ?? ""}
      title={title}
      name={name}
      initial={latest.value!.text}
      basedOn={latest.value!.version}
    />
  );
}

function Editor(props: { title: string; name: string | null; initial: string; basedOn: number | null }) {
  const [text, setText] = useState(props.initial);
  const textarea = useRef<HTMLTextAreaElement>(null);
  // The graph shows the last text that could be read, so a half-typed line does not blank it.
  const [drawn, setDrawn] = useState<{ plan: PlanBody; applets: Map<string, AppletVersion> } | null>(null);
  const [unreadable, setUnreadable] = useState<string | null>(null);
  const [check, setCheck] = useState<Check>({ state: "checking" });
  const [selected, setSelected] = useState<string | null>(null);
  const [publishing, setPublishing] = useState(false);
  const [published, setPublished] = useState<{ plan: string; version: number } | null>(null);
  const [refused, setRefused] = useState<unknown>(null);

  useEffect(() => {
    const abort = new AbortController();
    setCheck({ state: "checking" });
    const timer = setTimeout(async () => {
      const read = await readPlan(text);
      if (abort.signal.aborted) return;
      if ("plan" in read) {
        setUnreadable(null);
        const applets = await appletsOf(drawable(read.plan));
        if (!abort.signal.aborted) setDrawn({ plan: read.plan, applets });
      } else {
        setUnreadable(read.error);
      }
      try {
        await api.post("/v1/plans/validate", {
          body: text,
          contentType: contentType(formatOf(text)),
          signal: abort.signal,
        });
        if (!abort.signal.aborted) setCheck({ state: "valid" });
      } catch (e) {
        if (abort.signal.aborted || (e as Error).name === "AbortError") return;
        if (e instanceof ApiError && e.status === 422) {
          setCheck({ state: "invalid", problems: e.problems, message: e.message });
        } else {
          setCheck({ state: "failed", error: e });
        }
      }
    }, CHECK_AFTER_MS);
    return () => {
      clearTimeout(timer);
      abort.abort();
    };
  }, [text]);

  const problems = check.state === "invalid" ? check.problems : [];
  const marks = useMemo(() => {
    const m = new Map<string, NodeMark>();
    for (const p of problems) {
      if (!p.node) continue;
      const n = problems.filter((q) => q.node === p.node).length;
      m.set(p.node, { kind: "problem", badge: "!", note: `${n} problem${n > 1 ? "s" : ""}` });
    }
    return m;
  }, [problems]);
  const problemLines = useMemo(
    () => new Set(problems.map((p) => lineOf(text, p)).filter((l): l is number => l !== null)),
    [problems, text],
  );

  const publishAs = props.name ?? (drawn?.plan.name || null);
  const publish = async () => {
    if (!publishAs) return;
    setPublishing(true);
    setRefused(null);
    setPublished(null);
    try {
      const answer = await api.put("/v1/plans/{name}", {
        path: { name: publishAs },
        body: text,
        contentType: contentType(formatOf(text)),
      });
      setPublished(answer);
    } catch (e) {
      setRefused(e);
      if (e instanceof ApiError && e.status === 422) {
        setCheck({ state: "invalid", problems: e.problems, message: e.message });
      }
    } finally {
      setPublishing(false);
    }
  };

  const show = (line: number | null, node: string | null) => {
    if (node) setSelected(node);
    if (line !== null && textarea.current) goToLine(textarea.current, line);
  };

  return (
    <Page
      title={props.title}
      actions={props.name ? <a href={href(["plans", props.name])}>Back to the plan</a> : <a href={href(["plans"])}>Plans</a>}
    >
      <p class="muted">
        {props.basedOn !== null
          ? `Starting from version ${props.basedOn}. Publishing adds a new version; runs started on older versions keep theirs.`
          : "Write the plan in YAML or JSON. It is checked as you type, exactly as publishing checks it."}
      </p>
      <div class="editor">
        <div class="editor-text">
          <CodeText
            id="plan-text"
            label="Plan text (YAML or JSON)"
            value={text}
            onInput={(t) => {
              setText(t);
              setPublished(null);
            }}
            textarea={textarea}
            problemLines={problemLines}
            describedBy="check-status"
          />
          <CheckStatus check={check} unreadable={unreadable} />
          {problems.length ? (
            <ol class="problems" aria-label="Problems">
              {problems.map((p, i) => {
                const line = lineOf(text, p);
                return (
                  <li key={i} class={selected && p.node === selected ? "problem selected" : "problem"}>
                    <span class="problem-where">
                      {p.node ? (
                        <button type="button" class="link" onClick={() => show(line, p.node)}>
                          node {p.node}
                        </button>
                      ) : (
                        <span>plan</span>
                      )}
                      {p.field ? <code class="problem-field">{p.field}</code> : null}
                      {line !== null && !p.node ? (
                        <button type="button" class="link" onClick={() => show(line, null)}>
                          line {line}
                        </button>
                      ) : null}
                    </span>
                    <span class="problem-message">{p.message}</span>
                  </li>
                );
              })}
            </ol>
          ) : null}
          <div class="publish">
            <button
              type="button"
              onClick={publish}
              disabled={publishing || !publishAs}
              aria-describedby="publish-as"
            >
              {publishing ? "Publishing…" : "Publish"}
            </button>{" "}
            <span id="publish-as" class="muted">
              {publishAs ? `as plan ${publishAs}` : "the plan needs a name to publish"}
            </span>
          </div>
          <div aria-live="polite">
            {published ? (
              <p class="notice">
                Published {published.plan} version {published.version}.{" "}
                <a href={href(["plans", published.plan])}>Open the plan</a>
              </p>
            ) : null}
          </div>
          {refused ? (
            <div>
              <p class="error-text">Not published:</p>
              <ErrorNote error={refused} />
            </div>
          ) : null}
        </div>
        <div class="editor-graph">
          {drawn ? (
            <PlanGraph
              plan={drawn.plan}
              applets={drawn.applets}
              marks={marks}
              markLegend={marks.size ? [{ kind: "problem", badge: "!", label: "node with a problem" }] : []}
              selected={selected}
              onSelect={(node) => show(lineOf(text, { node, message: "" }), node)}
            />
          ) : (
            <p class="muted">The graph appears once the text can be read.</p>
          )}
        </div>
      </div>
    </Page>
  );
}

function CheckStatus({ check, unreadable }: { check: Check; unreadable: string | null }) {
  let body;
  if (check.state === "checking") body = <span class="muted">Checking…</span>;
  else if (check.state === "valid") body = <span class="ok-text">Valid: it would publish as written.</span>;
  else if (check.state === "invalid") {
    const n = check.problems.length;
    body = (
      <span class="error-text">
        {n ? `${n} problem${n > 1 ? "s" : ""}` : check.message}
      </span>
    );
  } else body = <ErrorNote error={check.error} />;
  return (
    <div id="check-status" class="check-status" role="status">
      {body}
      {unreadable && check.state !== "checking" ? (
        <span class="muted"> (the graph shows the last text that could be read)</span>
      ) : null}
    </div>
  );
}

/// The plan without the applet references that cannot name a version yet (half typed):
/// those are not looked up.
function drawable(plan: PlanBody): PlanBody {
  const nodes = Object.fromEntries(
    Object.entries(plan.nodes).filter(([, n]) => /^[^@\s]+@[^@\s]+$/.test(n.applet)),
  );
  return { ...plan, nodes };
}
