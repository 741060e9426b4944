// The operator's page: the tenants this browser knows (the API has no list of tenants),
// opening one by id, and creating one (its first token shown once).
import { useState } from "preact/hooks";
import { api } from "../api/client";
import { go, href } from "../route";
import { memory } from "../operatorMemory";
import { ShownOnce } from "../shownOnce";
import { ErrorNote, Page } from "../ui";

export function Operator() {
  const [id, setId] = useState("");
  const [made, setMade] = useState<{ tenant: string; token: string; token_id: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState("");
  const [openError, setOpenError] = useState<unknown>(null);
  const [known, setKnown] = useState(memory.tenants());
  const create = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setMade(null);
    try {
      const answer = await api.post("/v1/operator/tenants", { body: { id: id.trim() } });
      memory.rememberTenant(answer.tenant);
      memory.rememberToken(answer.tenant, answer.token_id, Date.now());
      setKnown(memory.tenants());
      setMade(answer);
      setId("");
    } catch (err) {
      setError(err);
    }
  };
  // Opening checks that the tenant exists (its ceiling answers 404 otherwise).
  const openTenant = async (e: Event) => {
    e.preventDefault();
    setOpenError(null);
    const tenant = open.trim();
    try {
      await api.get("/v1/operator/tenants/{tenant}/ceiling", { path: { tenant } });
      memory.rememberTenant(tenant);
      go(["operator", "tenants", tenant]);
    } catch (err) {
      setOpenError(err);
    }
  };
  return (
    <Page title="Operator">
      <p>Signed in as the operator: the tenant API (plans, runs) takes a tenant's token.</p>
      <h2>Tenants</h2>
      {known.length ? (
        <ul class="tenants">
          {known.map((t) => (
            <li key={t}>
              <a href={href(["operator", "tenants", t])}>{t}</a>{" "}
              <button
                type="button"
                class="link"
                aria-label={`Forget ${t} in this browser`}
                onClick={() => {
                  memory.forgetTenant(t);
                  setKnown(memory.tenants());
                }}
              >
                forget
              </button>
            </li>
          ))}
        </ul>
      ) : (
        <p class="muted">No tenants created or opened in this browser yet.</p>
      )}
      <p class="muted">
        coda has no list of tenants to show: these are the ones created or opened in this
        browser. Open another by its id.
      </p>
      <form onSubmit={openTenant} class="inline">
        <label>
          Open a tenant
          <input value={open} onInput={(e) => setOpen((e.target as HTMLInputElement).value)} required />
        </label>
        <button type="submit" class="secondary">Open</button>
      </form>
      <ErrorNote error={openError} />
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
    </Page>
  );
}
