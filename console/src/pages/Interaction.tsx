// One interaction: its status, parties, data sources and post-flow action; for a completed
// one, the details editor (what may not change shown read-only), its audit trail, clone and
// disposition.
import { api } from "../api/client";
import type { Interaction as Record_ } from "../api/model";
import { href } from "../route";
import { Time } from "../time";
import { ErrorNote, JsonText, Loading, Page, Status, useLoad } from "../ui";
import { AuditTrail } from "./interaction/AuditTrail";
import { CloneForm } from "./interaction/CloneForm";
import { DetailsForm } from "./interaction/DetailsForm";
import { DispositionForm } from "./interaction/DispositionForm";

export function Interaction({ id }: { id: string }) {
  const record = useLoad((signal) => api.get("/v1/interactions/{id}", { path: { id }, signal }), [id]);
  const audit = useLoad(
    (signal) => api.get("/v1/interactions/{id}/audit", { path: { id }, signal }),
    [id],
  );
  const i = record.value;
  const changed = () => {
    record.reload();
    audit.reload();
  };
  return (
    <Page title={`Interaction ${id}`}>
      <ErrorNote error={record.error} />
      {record.loading && !i ? <Loading what="the interaction" /> : null}
      {i ? (
        <>
          <Facts i={i} />
          <p>
            <a href={href(["runs"], { interaction: i.id })}>Runs of this interaction</a>
          </p>
          <h2>Data sources</h2>
          <DataSources data={i.data} />
          <h2>Post-flow action</h2>
          <PostFlow i={i} />
          {i.status === "completed" ? (
            <>
              <h2>Details</h2>
              <DetailsForm i={i} onSaved={changed} />
              <h2>Audit history</h2>
              <ErrorNote error={audit.error} />
              {audit.value ? <AuditTrail entries={audit.value.audit} /> : <Loading what="the audit history" />}
              <h2>Disposition</h2>
              <DispositionForm i={i} onSubmitted={changed} />
              <h2>Clone</h2>
              {/* Anew after each change: its subject is prefilled from the details. */}
              <CloneForm key={i.updated_at_ms} i={i} />
            </>
          ) : (
            <p class="notice">
              This interaction is still active: its details can be edited, cloned and dispositioned once it completes.
            </p>
          )}
        </>
      ) : null}
    </Page>
  );
}

function Facts({ i }: { i: Record_ }) {
  return (
    <dl class="facts">
      <dt>Status</dt>
      <dd><Status status={i.status} /></dd>
      <dt>Channel</dt>
      <dd>{i.channel}</dd>
      <dt>Plan</dt>
      <dd>{i.plan ? <a href={href(["plans", i.plan])}>{i.plan}</a> : "—"}</dd>
      <dt>Skill</dt>
      <dd>{i.skill ?? "—"}</dd>
      <dt>Agent</dt>
      <dd>{i.agent ?? "—"}</dd>
      <dt>Parties present</dt>
      <dd>{i.present.length ? i.present.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(", ") : "none"}</dd>
      <dt>Agent reached</dt>
      <dd>{i.agent_reached ? "yes" : "no"}</dd>
      <dt>Completed by</dt>
      <dd>{i.completed_by ?? "—"}</dd>
      <dt>Completed</dt>
      <dd><Time ms={i.completed_at_ms} /></dd>
      <dt>Updated</dt>
      <dd><Time ms={i.updated_at_ms} /></dd>
      {i.follow_up ? (
        <>
          <dt>Follow-up</dt>
          <dd><JsonText value={i.follow_up} /></dd>
        </>
      ) : null}
      {i.post_contact ? (
        <>
          <dt>Post-contact work</dt>
          <dd><JsonText value={i.post_contact} /></dd>
        </>
      ) : null}
    </dl>
  );
}

export function DataSources({ data }: { data: Record<string, unknown> }) {
  const names = Object.keys(data).sort();
  if (names.length === 0) return <p class="muted">No data sources.</p>;
  return (
    <dl class="data">
      {names.map((k) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{typeof data[k] === "string" ? (data[k] as string) : JSON.stringify(data[k])}</dd>
        </div>
      ))}
    </dl>
  );
}

function PostFlow({ i }: { i: Record_ }) {
  const p = i.post_flow;
  if (!p) return <p class="muted">None set.</p>;
  return (
    <dl class="facts">
      <dt>Target</dt>
      <dd>{p.target}</dd>
      <dt>Action</dt>
      <dd>{p.action}</dd>
      <dt>Plan</dt>
      <dd><a href={href(["plans", p.plan])}>{p.plan}</a></dd>
      <dt>Fired</dt>
      <dd>{i.post_flow_fired ? "yes" : "not yet"}</dd>
      <dt>Invocation data</dt>
      <dd><JsonText value={p.invocation_data} /></dd>
    </dl>
  );
}
