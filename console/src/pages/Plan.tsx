// One plan: its graph laid out automatically, what each node is configured with, its
// versions, and its runs.
import { useState } from "preact/hooks";
import { api } from "../api/client";
import type { PlanVersion } from "../api/model";
import { appletsOf } from "../applets";
import { PlanGraph } from "../graph";
import { VersionDiff } from "./PlanDiff";
import { href } from "../route";
import { Time } from "../time";
import { ErrorNote, JsonText, Loading, Page, useLoad } from "../ui";

export function Plan({ name, version }: { name: string; version: number | null }) {
  const [selected, setSelected] = useState<string | null>(null);
  const plan = useLoad(
    async (signal) => {
      const body =
        version === null
          ? await api.get("/v1/plans/{name}", { path: { name }, signal })
          : await api.get("/v1/plans/{name}/versions/{version}", {
              path: { name, version },
              signal,
            });
      return { body, applets: await appletsOf(body.body) };
    },
    [name, version],
  );
  const versions = useLoad(
    (signal) => api.get("/v1/plans/{name}/versions", { path: { name }, signal }),
    [name],
  );
  const p = plan.value?.body;
  const node = p && selected ? p.body.nodes[selected] : undefined;
  return (
    <Page
      title={`Plan ${name}`}
      actions={
        <>
          <a href={href(["plans", name, "edit"])}>Edit (new version)</a>
          <a href={href(["runs"], { plan: name })}>Runs of this plan</a>
        </>
      }
    >
      <ErrorNote error={plan.error} />
      {plan.loading && !p ? <Loading what="the plan" /> : null}
      {p ? (
        <>
          <dl class="facts">
            <dt>Version</dt>
            <dd>{p.version}</dd>
            <dt>Type</dt>
            <dd>{p.body.type ?? "default"}</dd>
            <dt>Starts at</dt>
            <dd>{p.body.start}</dd>
            {p.body.post_interaction ? (
              <>
                <dt>Post-interaction plan</dt>
                <dd>
                  <a href={href(["plans", p.body.post_interaction])}>{p.body.post_interaction}</a>
                </dd>
              </>
            ) : null}
            {p.body.description ? (
              <>
                <dt>Description</dt>
                <dd class="description">{p.body.description}</dd>
              </>
            ) : null}
          </dl>
          <div class="split">
            <PlanGraph
              plan={p.body}
              applets={plan.value!.applets}
              selected={selected}
              onSelect={setSelected}
            />
            <aside class="detail" aria-live="polite" aria-label="Selected node">
              {node && selected ? (
                <>
                  <h2>Node {selected}</h2>
                  <dl class="facts">
                    <dt>Applet</dt>
                    <dd>{node.applet}</dd>
                    <dt>Exits</dt>
                    <dd>
                      {Object.entries(node.exits ?? {}).length
                        ? Object.entries(node.exits ?? {})
                            .map(([e, t]) => `${e} → ${t}`)
                            .join(", ")
                        : "none wired"}
                    </dd>
                    <dt>On error</dt>
                    <dd>{node.error ?? "the run fails"}</dd>
                  </dl>
                  <h3>Config</h3>
                  <JsonText value={node.config ?? {}} />
                </>
              ) : (
                <p class="muted">Select a node (click, or Tab to it and press Enter) to see its config.</p>
              )}
            </aside>
          </div>
        </>
      ) : null}
      <h2>Versions</h2>
      <ErrorNote error={versions.error} />
      {versions.value ? (
        <ol class="versions" reversed>
          {[...versions.value.versions].reverse().map((v) => (
            <li key={v.version}>
              <a
                href={href(["plans", name], { version: String(v.version) })}
                aria-current={p?.version === v.version ? "page" : undefined}
              >
                Version {v.version}
              </a>{" "}
              <Time ms={v.created_at_ms} /> <code class="digest">{v.digest.slice(0, 19)}</code>
            </li>
          ))}
        </ol>
      ) : null}
      {versions.value ? <VersionDiff name={name} versions={versions.value.versions} /> : null}
    </Page>
  );
}
