// One tenant, for the operator: its ceiling and its tokens.
import { api } from "../api/client";
import { href } from "../route";
import { ErrorNote, Loading, Page, useLoad } from "../ui";
import { CeilingEditor } from "./CeilingEditor";
import { Tokens } from "./Tokens";

export function Tenant({ tenant }: { tenant: string }) {
  // The ceiling's GET is also how the page learns the tenant exists (404 otherwise).
  const view = useLoad((signal) => api.get("/v1/operator/tenants/{tenant}/ceiling", { path: { tenant }, signal }), [tenant]);
  return (
    <Page title={`Tenant ${tenant}`} actions={<a href={href(["operator"])}>All tenants</a>}>
      <ErrorNote error={view.error} />
      {view.loading && !view.value ? <Loading what="the ceiling" /> : null}
      {view.value ? (
        <div class="tenant-split">
          <CeilingEditor key={tenant} tenant={tenant} view={view.value} />
          <Tokens key={tenant} tenant={tenant} />
        </div>
      ) : null}
    </Page>
  );
}
