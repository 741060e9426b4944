// A tenant's tokens, for the operator: the list from the API (newest first, by page; ids and
// times, never a secret), issuing one (its secret shown once) and revoking one (asked on the
// page first).
import { useState } from "preact/hooks";
import { api } from "../api/client";
import type { TokenEntry } from "../api/model";
import { ShownOnce } from "../shownOnce";
import { Time } from "../time";
import { ErrorNote, Loading, useLoad } from "../ui";

const PAGE = 50;

export function Tokens({ tenant }: { tenant: string }) {
  // The pages loaded so far, each after the last one's `next`: "More" appends one.
  const [pages, setPages] = useState(1);
  const loaded = useLoad((signal) => loadTokens(tenant, pages, signal), [tenant, pages]);
  const list = { ...loaded, tokens: loaded.value?.tokens ?? [], more: loaded.value?.more ?? false };
  const [fresh, setFresh] = useState<{ token: string; token_id: string } | null>(null);
  const [asking, setAsking] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState<string | null>(null);

  const issue = async () => {
    setBusy(true);
    setError(null);
    setNote(null);
    try {
      const answer = await api.post("/v1/operator/tenants/{tenant}/tokens", { path: { tenant } });
      setFresh(answer);
      list.reload();
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
      setAsking(null);
      if (fresh?.token_id === id) setFresh(null);
      setNote(`Token ${id} revoked: it is refused from now on.`);
      list.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const tokens = list.tokens;
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
      <ErrorNote error={list.error} />
      {list.loading && !tokens.length ? <Loading what="the tokens" /> : null}
      {tokens.length ? (
        <table class="list tokens">
          <caption class="visually-hidden">The tenant's tokens, newest first</caption>
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
                <td data-label="Issued"><Time ms={t.created_at_ms} /></td>
                <td data-label="State">
                  {t.revoked_at_ms != null ? (
                    <>
                      revoked <Time ms={t.revoked_at_ms} />
                    </>
                  ) : (
                    "live"
                  )}
                </td>
                <td>
                  {t.revoked_at_ms != null ? null : asking === t.id ? (
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
      ) : !list.loading && !list.error ? (
        <p class="muted">{tenant} has no tokens.</p>
      ) : null}
      {list.more ? (
        <button type="button" class="secondary" onClick={() => setPages((n) => n + 1)} disabled={list.loading}>
          More tokens
        </button>
      ) : null}
    </section>
  );
}

// The first `pages` pages of the tenant's tokens, each after the last one's `next`.
async function loadTokens(tenant: string, pages: number, signal: AbortSignal) {
  const tokens: TokenEntry[] = [];
  let after: string | undefined;
  for (let i = 0; i < pages; i++) {
    const page = await api.get("/v1/operator/tenants/{tenant}/tokens", { path: { tenant }, query: { after, limit: PAGE }, signal });
    tokens.push(...page.tokens);
    after = page.next ?? undefined;
    if (after === undefined) break;
  }
  return { tokens, more: after !== undefined };
}
