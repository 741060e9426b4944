// An applet's grant: what it may reach (hosts, email, databases, secrets, interactions, kv
// prefixes), each beside what the operator's ceiling allows this tenant. coda checks the
// grant against the ceiling when it is saved; a refusal lists each field past it.
import { useEffect, useState } from "preact/hooks";
import { api } from "../../api/client";
import type { Ceiling, Grant } from "../../api/model";
import { Refusal } from "../../refusal";
import { ErrorNote, Loading, useLoad } from "../../ui";

const lines = (s: string) => s.split("\n").map((l) => l.trim()).filter(Boolean);
const EMPTY: Grant = { http: [], email: false, sql: [], secrets: [], interactions: false };

function allows(list: string[] | undefined): string {
  return list && list.length ? list.join(", ") : "nothing";
}

export function GrantEditor({ applet }: { applet: string }) {
  const all = useLoad(
    async (signal) => {
      const [grants, ceiling, secrets] = await Promise.all([
        api.get("/v1/grants", { signal }),
        api.get("/v1/ceiling", { signal }),
        api.get("/v1/secrets", { signal }),
      ]);
      return { grants: grants.grants, ceiling, secrets: secrets.secrets.map((s) => (typeof s === "string" ? s : s.name)) };
    },
    [applet],
  );
  if (all.error) return <ErrorNote error={all.error} />;
  if (!all.value) return <Loading what="the grant and the ceiling" />;
  const current = all.value.grants.find((g) => g.applet === applet)?.grant ?? null;
  const others = all.value.grants.filter((g) => g.applet.startsWith(`${applet}@`));
  return (
    <>
      {all.value.ceiling.set ? null : (
        <p class="notice">The operator has set no ceiling for this tenant: coda's defaults apply, which allow no host, email, database or interactions.</p>
      )}
      <GrantForm
        applet={applet}
        current={current}
        ceiling={all.value.ceiling.ceiling}
        secrets={all.value.secrets}
        onChanged={all.reload}
      />
      {others.length ? (
        <p class="muted">
          Also granted per version: {others.map((g) => g.applet).join(", ")} (a version's grant replaces the applet's for that version).
        </p>
      ) : null}
    </>
  );
}

function GrantForm(props: {
  applet: string;
  current: Grant | null;
  ceiling: Ceiling;
  secrets: string[];
  onChanged: () => void;
}) {
  const { applet, current, ceiling } = props;
  const g = current ?? EMPTY;
  const showKv = Array.isArray(g.kv) || "kv" in ceiling;
  const [http, setHttp] = useState(g.http.join("\n"));
  const [email, setEmail] = useState(g.email);
  const [sql, setSql] = useState(g.sql.join("\n"));
  const [secrets, setSecrets] = useState(g.secrets.join("\n"));
  const [interactions, setInteractions] = useState(g.interactions);
  const [kv, setKv] = useState((g.kv ?? []).join("\n"));
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    setHttp(g.http.join("\n"));
    setEmail(g.email);
    setSql(g.sql.join("\n"));
    setSecrets(g.secrets.join("\n"));
    setInteractions(g.interactions);
    setKv((g.kv ?? []).join("\n"));
  }, [current]);

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    const body: Grant = { http: lines(http), email, sql: lines(sql), secrets: lines(secrets), interactions };
    if (showKv) body.kv = lines(kv);
    setBusy(true);
    try {
      await api.put("/v1/grants/{applet}", { path: { applet }, body });
      setSaved(`Saved the grant for ${applet}.`);
      props.onChanged();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const revoke = async () => {
    setError(null);
    setSaved(null);
    try {
      await api.del("/v1/grants/{applet}", { path: { applet } });
      setSaved(`Revoked the grant for ${applet}.`);
      props.onChanged();
    } catch (err) {
      setError(err);
    }
  };
  const dbs = ceiling.databases ?? [];
  return (
    <form class="stacked grant" onSubmit={save} aria-label={`Grant for ${applet}`}>
      <p>{current ? "Granted now:" : "Not granted anything yet."}</p>
      <label>
        HTTP hosts (one per line, host or host:port, * for a label or port)
        <textarea rows={3} class="mono" value={http} onInput={(e) => setHttp((e.target as HTMLTextAreaElement).value)} />
        <span class="allows">The ceiling allows: {allows(ceiling.http_hosts)}</span>
      </label>
      <label class="check">
        <input type="checkbox" checked={email} onChange={(e) => setEmail((e.target as HTMLInputElement).checked)} />
        Send email
        <span class="allows">The ceiling {ceiling.email ? "allows email" : "does not allow email"}</span>
      </label>
      <label>
        Databases (one per line)
        <textarea rows={2} class="mono" value={sql} onInput={(e) => setSql((e.target as HTMLTextAreaElement).value)} />
        <span class="allows">The ceiling allows: {allows(dbs)}</span>
      </label>
      <label>
        Secrets (one name per line)
        <textarea rows={2} class="mono" value={secrets} onInput={(e) => setSecrets((e.target as HTMLTextAreaElement).value)} />
        <span class="allows">
          This tenant's secrets: {allows(props.secrets)}
          {ceiling.max_secrets != null ? ` (at most ${ceiling.max_secrets})` : ""}
        </span>
      </label>
      <label class="check">
        <input type="checkbox" checked={interactions} onChange={(e) => setInteractions((e.target as HTMLInputElement).checked)} />
        Create interactions
        <span class="allows">The ceiling {ceiling.interactions ? "allows interactions" : "does not allow interactions"}</span>
      </label>
      {showKv ? (
        <label>
          Key-value prefixes (one per line)
          <textarea rows={2} class="mono" value={kv} onInput={(e) => setKv((e.target as HTMLTextAreaElement).value)} />
          <span class="allows">The ceiling allows: {Array.isArray(ceiling.kv) ? allows(ceiling.kv) : String(ceiling.kv ?? "nothing")}</span>
        </label>
      ) : null}
      <div>
        <button type="submit" disabled={busy}>Save grant</button>{" "}
        {current ? <button type="button" class="secondary" onClick={revoke}>Revoke</button> : null}
      </div>
      <Refusal error={error} />
      {saved ? <p class="notice" role="status">{saved}</p> : null}
    </form>
  );
}
