// The operator's page. This slice offers creating a tenant (its first token shown once);
// tenants' ceilings and tokens follow (issue 16, item 8).
import { useState } from "preact/hooks";
import { api } from "../api/client";
import { ErrorNote, Page } from "../ui";

export function Operator() {
  const [id, setId] = useState("");
  const [made, setMade] = useState<{ tenant: string; token: string; token_id: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setMade(null);
    try {
      setMade(await api.post("/v1/operator/tenants", { body: { id: id.trim() } }));
      setId("");
    } catch (err) {
      setError(err);
    }
  };
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
        <div class="notice" role="status">
          Tenant <strong>{made.tenant}</strong> created. Its token, shown this once:{" "}
          <code class="secret">{made.token}</code> (id <code>{made.token_id}</code>)
        </div>
      ) : null}
    </Page>
  );
}
