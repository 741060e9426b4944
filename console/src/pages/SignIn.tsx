// Sign in with a tenant's or the operator's token. The token is tried as a tenant's first
// (GET /v1/plans), then as the operator's; a refusal shows the API's own reason.
import { useState } from "preact/hooks";
import { ApiError, request } from "../api/client";
import { session, type Role } from "../session";
import { ErrorNote } from "../ui";

async function roleOf(token: string): Promise<Role> {
  try {
    await request("get", "/v1/plans", {}, token);
    return "tenant";
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    try {
      // Any answer but 401 means the operator's token (the probe tenant need not exist).
      await request(
        "get",
        "/v1/operator/tenants/{tenant}/ceiling",
        { path: { tenant: "coda-console-probe" } },
        token,
      );
    } catch (op) {
      if (op instanceof ApiError && op.status === 401) throw e; // the tenant API's reason
      if (!(op instanceof ApiError) || op.status >= 500 || op.status === 429) throw op;
    }
    return "operator";
  }
}

export function SignIn({ onSignedIn, why }: { onSignedIn: (role: Role) => void; why: string | null }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const t = token.trim();
    if (!t) return;
    setBusy(true);
    setError(null);
    try {
      const role = await roleOf(t);
      session.set(t, role);
      setToken("");
      onSignedIn(role);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin" id="main">
      <h1>coda console</h1>
      {why ? (
        <p class="error" role="alert">
          {why}
        </p>
      ) : null}
      <form onSubmit={submit} aria-describedby="signin-help">
        <label for="token">Token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          required
          autoFocus
        />
        <p id="signin-help" class="muted">
          A tenant's token (<code>coda_…</code>) or the operator's. It stays in this tab
          only and is sent as the bearer header.
        </p>
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <ErrorNote error={error} />
    </main>
  );
}
