// The operator's page: every tenant, by page (`GET /v1/operator/tenants`), and creating one
// (its first token shown once).
import { useState } from "preact/hooks";
import { api } from "../api/client";
import { href, useRoute } from "../route";
import { ShownOnce } from "../shownOnce";
import { Time } from "../time";
import { ErrorNote, Loading, Page, useLoad } from "../ui";

const PAGE = 50;

export function Operator() {
  const route = useRoute();
  const after = route.query.get("after") ?? undefined;
  const page = useLoad((signal) => api.get("/v1/operator/tenants", { query: { after, limit: PAGE }, signal }), [after]);
  const [id, setId] = useState("");
  const [made, setMade] = useState<{ tenant: string; token: string; token_id: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setMade(null);
    try {
      const answer = await api.post("/v1/operator/tenants", { body: { id: id.trim() } });
      setMade(answer);
      setId("");
      page.reload();
    } catch (err) {
      setError(err);
    }
  };
  const tenants = page.value?.tenants ?? [];
  return (
    <Page title="Operator">
      <p>Signed in as the operator: the tenant API (plans, runs) takes a tenant's token.</p>
      <h2>Create a tenant</h2>
      <form onSubmit={create} class="inline">
        <label>
          Tenant id
          <input value={id} onInput={(e) => setId((e.target as HTMLInputElement).value)} required />
        </label>
        <button type="submit">Create</button>
      </form>
      <ErrorNote error={error} />
      {made ? (
        <>
          <ShownOnce label={`Tenant ${made.tenant} created. Its first token`} secret={made.token} id={made.token_id} />
          <p>
            <a href={href(["operator", "tenants", made.tenant])}>Set {made.tenant}'s ceiling and tokens</a>
          </p>
        </>
      ) : null}
      <h2 id="tenants-title">Tenants</h2>
      <ErrorNote error={page.error} />
      {page.loading && !page.value ? <Loading what="the tenants" /> : null}
      {page.value && !tenants.length ? (
        <p class="muted">{after ? "No more tenants." : "No tenants yet: create the first above."}</p>
      ) : null}
      {tenants.length ? (
        <table class="list tenants" aria-labelledby="tenants-title">
          <thead>
            <tr>
              <th scope="col">Tenant</th>
              <th scope="col">Created</th>
              <th scope="col">Live tokens</th>
              <th scope="col">Ceiling</th>
            </tr>
          </thead>
          <tbody>
            {tenants.map((t) => (
              <tr key={t.id} data-tenant={t.id}>
                <td data-label="Tenant">
                  <a href={href(["operator", "tenants", t.id])}>{t.id}</a>
                </td>
                <td data-label="Created">
                  <Time ms={t.created_at_ms} />
                </td>
                <td data-label="Live tokens">{t.live_tokens}</td>
                <td data-label="Ceiling">
                  {t.ceiling_updated_at_ms != null ? (
                    <>
                      set <Time ms={t.ceiling_updated_at_ms} />
                    </>
                  ) : (
                    <span class="muted">never set: allows nothing</span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <nav class="pager" aria-label="Pages of tenants">
        {after ? <a href={href(["operator"])}>First page</a> : null}
        {page.value?.next ? (
          <a href={href(["operator"], { after: page.value.next })} rel="next">
            Next page
          </a>
        ) : null}
      </nav>
    </Page>
  );
}
