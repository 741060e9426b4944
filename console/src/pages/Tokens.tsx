// A tenant's tokens, for the operator: issue one (its secret shown once), the ones issued
// from this browser, and revoking one (asked on the page first). The API does not list a
// tenant's tokens, so a token issued elsewhere is revoked by its id.
import { useState } from "preact/hooks";
import { api } from "../api/client";
import { memory } from "../operatorMemory";
import { ShownOnce } from "../shownOnce";
import { Time } from "../time";
import { ErrorNote } from "../ui";

export function Tokens({ tenant }: { tenant: string }) {
  const [tokens, setTokens] = useState(() => memory.tokens(tenant));
  const [fresh, setFresh] = useState<{ token: string; token_id: string } | null>(null);
  const [asking, setAsking] = useState<string | null>(null);
  const [byId, setById] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState<string | null>(null);

  const issue = async () => {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      const answer = await api.post("/v1/operator/tenants/{tenant}/tokens", { path: { tenant } });
      memory.rememberToken(tenant, answer.token_id, Date.now());
      setTokens(memory.tokens(tenant));
      setFresh(answer);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (id: string) => {
    setBusy(true);
    setError(null);
    try {
      await api.del("/v1/operator/tenants/{tenant}/tokens/{token_id}", { path: { tenant, token_id: id } });
      memory.markRevoked(tenant, id, Date.now());
      setTokens(memory.tokens(tenant));
      setAsking(null);
      setById("");
      if (fresh?.token_id === id) setFresh(null);
      setNote(`Token ${id} revoked: it is refused from now on.`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="tokens-title">
      <h2 id="tokens-title">Tokens</h2>
      <button type="button" onClick={issue} disabled={busy}>
        Issue a token
      </button>
      {fresh ? <ShownOnce label={`A new token for ${tenant}`} secret={fresh.token} id={fresh.token_id} /> : null}
      {note ? (
        <p class="notice" role="status">
          {note}
        </p>
      ) : null}
      <ErrorNote error={error} />
      {tokens.length ? (
        <table class="list tokens">
          <caption class="visually-hidden">Tokens issued from this browser</caption>
          <thead>
            <tr>
              <th scope="col">Token id</th>
              <th scope="col">Issued</th>
              <th scope="col">State</th>
              <th scope="col"><span class="visually-hidden">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id} data-token={t.id}>
                <td data-label="Token id"><code>{t.id}</code></td>
                <td data-label="Issued">{t.issued_at_ms ? <Time ms={t.issued_at_ms} /> : <span class="muted">—</span>}</td>
                <td data-label="State">
                  {t.revoked_at_ms ? (
                    <>
                      revoked <Time ms={t.revoked_at_ms} />
                    </>
                  ) : (
                    "live"
                  )}
                </td>
                <td>
                  {t.revoked_at_ms ? null : asking === t.id ? (
                    <div class="confirm" role="alertdialog" aria-labelledby={`revoke-${t.id}`}>
                      <p id={`revoke-${t.id}`}>
                        Revoke token {t.id}? Whatever uses it is refused from its next request.
                        This cannot be undone.
                      </p>
                      <button type="button" onClick={() => revoke(t.id)} disabled={busy} autoFocus>
                        Yes, revoke it
                      </button>{" "}
                      <button type="button" class="secondary" onClick={() => setAsking(null)} disabled={busy}>
                        Keep it
                      </button>
                    </div>
                  ) : (
                    <button type="button" class="secondary" onClick={() => setAsking(t.id)} aria-label={`Revoke ${t.id}…`}>
                      Revoke…
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="muted">No tokens issued from this browser.</p>
      )}
      <p class="muted">
        coda does not list a tenant's tokens: above are the ones issued from this browser.
        Revoke any other by its id.
      </p>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          if (byId.trim()) setAsking(byId.trim());
        }}
      >
        <label>
          Token id
          <input value={byId} onInput={(e) => setById((e.target as HTMLInputElement).value)} placeholder="tok_…" required />
        </label>
        <button type="submit" class="secondary">Revoke…</button>
      </form>
      {asking && !tokens.some((t) => t.id === asking) ? (
        <div class="confirm" role="alertdialog" aria-labelledby="revoke-by-id">
          <p id="revoke-by-id">Revoke token {asking} of {tenant}? This cannot be undone.</p>
          <button type="button" onClick={() => revoke(asking)} disabled={busy} autoFocus>
            Yes, revoke it
          </button>{" "}
          <button type="button" class="secondary" onClick={() => setAsking(null)} disabled={busy}>
            Keep it
          </button>
        </div>
      ) : null}
    </section>
  );
}
