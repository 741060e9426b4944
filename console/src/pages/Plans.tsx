import { api } from "../api/client";
import type { PlanSummary } from "../api/model";
import { href } from "../route";
import { Time } from "../time";
import { ErrorNote, Loading, Page, useLoad } from "../ui";

export function Plans() {
  const plans = useLoad(
    (signal) => api.get("/v1/plans", { signal }),
    [],
  );
  return (
    <Page title="Plans" actions={<a href={href(["new-plan"])}>New plan</a>}>
      <ErrorNote error={plans.error} />
      {plans.loading && !plans.value ? <Loading what="plans" /> : null}
      {plans.value && plans.value.plans.length === 0 ? (
        <p>No plans yet. Write one in the <a href={href(["new-plan"])}>editor</a>, or publish one with <code>PUT /v1/plans/NAME</code> or <code>coda plan publish</code>.</p>
      ) : null}
      {plans.value && plans.value.plans.length > 0 ? (
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Plan</th>
              <th scope="col">Type</th>
              <th scope="col">Version</th>
              <th scope="col">Published</th>
            </tr>
          </thead>
          <tbody>
            {plans.value.plans.map((p) => (
              <tr key={p.name}>
                <td data-label="Plan">
                  <a href={href(["plans", p.name])}>{p.name}</a>
                </td>
                <td data-label="Type">{p.type}</td>
                <td data-label="Version">{p.version}</td>
                <td data-label="Published">
                  <Time ms={p.created_at_ms} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </Page>
  );
}
