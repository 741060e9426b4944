// The operator's editor of a tenant's ceiling: a form for the ceiling's fields, and the SMTP
// server and databases as JSON. Saving PUTs the whole document; a refusal is shown beside
// the field the server names. Credentials are never shown: what the view shows in their
// place, sent back, keeps them (the server's rule, coda_capabilities::ceiling_doc), so the
// editor says "kept" and offers to replace them rather than asking for them again.
import { useState } from "preact/hooks";
import { ApiError, api } from "../api/client";
import type { Ceiling, CeilingView } from "../api/model";
import { CEILING_FIELDS, fromText, refusedField, toText } from "../ceilingFields";
import { ErrorNote } from "../ui";

type Values = Record<string, string | boolean>;

function valuesOf(view: CeilingView): Values {
  const v: Values = {};
  for (const f of CEILING_FIELDS) v[f.key] = toText(f, view.ceiling[f.key]);
  // The JSON fields' keys are apart from the ceiling's (which has its own `databases`).
  if ("kv" in view.ceiling) v["json.kv"] = view.ceiling.kv == null ? "" : JSON.stringify(view.ceiling.kv, null, 2);
  // The view has no SMTP credentials and says whether there are some: an smtp sent without
  // them keeps the stored ones, so the text leaves them out (the form below replaces them).
  const { authenticated: _, ...smtp } = view.smtp ?? {};
  v["json.smtp"] = view.smtp ? JSON.stringify(smtp, null, 2) : "";
  v["json.databases"] = JSON.stringify(view.databases ?? {}, null, 2);
  return v;
}

// A JSON text field: empty is `empty`; text that is not JSON goes as a string, for the
// server to refuse at that field.
function json(text: string | boolean | undefined, empty: unknown): unknown {
  const s = String(text ?? "").trim();
  if (!s) return empty;
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}

/// What saving does with the SMTP server's credentials: keep the stored ones, replace them
/// with the ones typed, or send none (dropping stored ones).
type SmtpCredentials = { mode: "kept" } | { mode: "replace"; username: string; password: string } | { mode: "none" };

const initialCredentials = (view: CeilingView): SmtpCredentials =>
  view.smtp?.authenticated ? { mode: "kept" } : { mode: "none" };

/// The databases whose URL the view shows with `***` in place of stored credentials.
const keptDatabases = (databases: Record<string, string>) =>
  Object.entries(databases)
    .filter(([, url]) => /\/\/\*\*\*@|password=\*\*\*/i.test(url))
    .map(([name]) => name);

export function CeilingEditor({ tenant, view: initial }: { tenant: string; view: CeilingView }) {
  const [view, setView] = useState(initial);
  const [values, setValues] = useState<Values>(() => valuesOf(initial));
  const [credentials, setCredentials] = useState<SmtpCredentials>(() => initialCredentials(initial));
  const [refusal, setRefusal] = useState<{ field: string | null; message: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState(false);
  const hasKv = "kv" in view.ceiling;
  const set = (key: string, value: string | boolean) => {
    setValues((v) => ({ ...v, [key]: value }));
    setDone(false);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setRefusal(null);
    setError(null);
    setDone(false);
    const ceiling: Record<string, unknown> = {};
    for (const f of CEILING_FIELDS) ceiling[f.key] = fromText(f, values[f.key]!);
    if (hasKv) ceiling.kv = json(values["json.kv"], null);
    const smtp = json(values["json.smtp"], null);
    if (smtp && typeof smtp === "object" && !Array.isArray(smtp)) {
      const fields = smtp as Record<string, unknown>;
      if (credentials.mode === "replace") {
        fields.username = credentials.username;
        fields.password = credentials.password;
      } else if (credentials.mode === "none" && view.smtp?.authenticated) {
        fields.authenticated = false;
      }
    }
    const body = { ceiling: ceiling as Partial<Ceiling>, smtp, databases: json(values["json.databases"], {}) };
    try {
      const answer = await api.put("/v1/operator/tenants/{tenant}/ceiling", { path: { tenant }, body });
      setView(answer);
      setValues(valuesOf(answer));
      setCredentials(initialCredentials(answer));
      setDone(true);
    } catch (err) {
      if (err instanceof ApiError && err.kind === "invalid-ceiling") setRefusal(refusedField(err.message));
      else setError(err);
    } finally {
      setBusy(false);
    }
  };

  // The refusal beside its field, described by it for screen readers.
  const problem = (field: string) =>
    refusal?.field === field ? (
      <p class="field-error" id={`err-${field}`} role="alert">
        Refused: {refusal.message}
      </p>
    ) : null;
  const described = (field: string, help: string) =>
    refusal?.field === field ? `help-${field} err-${field}` : help ? `help-${field}` : undefined;

  return (
    <form class="ceiling" onSubmit={save} aria-labelledby="ceiling-title" noValidate>
      <h2 id="ceiling-title">Ceiling</h2>
      <p class="muted">
        What {tenant} may grant its applets at most. {view.set ? "Set by the operator." : "Never set: the default allows nothing."}
      </p>
      {CEILING_FIELDS.map((f) => {
        const id = `ceiling.${f.key}`;
        const invalid = refusal?.field === id;
        return (
          <div class={`field${invalid ? " invalid" : ""}`} key={f.key}>
            {f.kind === "bool" ? (
              <label class="check">
                <input
                  type="checkbox"
                  id={id}
                  checked={values[f.key] === true}
                  onChange={(e) => set(f.key, (e.target as HTMLInputElement).checked)}
                  aria-describedby={described(id, f.help)}
                  aria-invalid={invalid || undefined}
                />
                {f.label}
              </label>
            ) : (
              <>
                <label for={id}>{f.label}</label>
                {f.kind === "list" ? (
                  <textarea
                    id={id}
                    rows={3}
                    spellcheck={false}
                    value={String(values[f.key] ?? "")}
                    onInput={(e) => set(f.key, (e.target as HTMLTextAreaElement).value)}
                    aria-describedby={described(id, f.help)}
                    aria-invalid={invalid || undefined}
                  />
                ) : (
                  <input
                    id={id}
                    inputMode="numeric"
                    value={String(values[f.key] ?? "")}
                    onInput={(e) => set(f.key, (e.target as HTMLInputElement).value)}
                    aria-describedby={described(id, f.help)}
                    aria-invalid={invalid || undefined}
                  />
                )}
              </>
            )}
            <p class="help muted" id={`help-${id}`}>{f.help}</p>
            {problem(id)}
          </div>
        );
      })}
      {hasKv ? (
        <JsonField id="ceiling.kv" value={values["json.kv"]} set={(v) => set("json.kv", v)} label="Key-value store (JSON)" help="Its limits, {} for the defaults; empty: no key-value store." refusal={refusal} />
      ) : null}
      <JsonField
        id="smtp"
        label="SMTP server (JSON)"
        help="host, port, tls, from, timeout_ms; empty: none. Its credentials are below."
        value={values["json.smtp"]}
        set={(v) => set("json.smtp", v)}
        refusal={refusal}
      />
      <SmtpCredentialsField
        stored={view.smtp?.authenticated === true}
        value={credentials}
        set={(c) => {
          setCredentials(c);
          setDone(false);
        }}
      />
      <JsonField
        id="databases"
        label="Databases (JSON)"
        help="Name to URL (sqlite:PATH or postgres://…). *** stands for stored credentials: a URL left as shown keeps them; a full URL replaces them."
        value={values["json.databases"]}
        set={(v) => set("json.databases", v)}
        refusal={refusal}
      />
      {keptDatabases(view.databases ?? {}).length ? (
        <p class="muted kept-databases">Credentials kept (not shown) for: {keptDatabases(view.databases ?? {}).join(", ")}.</p>
      ) : null}
      {refusal && refusal.field === null ? (
        <p class="error" role="alert">
          Refused: {refusal.message}
        </p>
      ) : null}
      <ErrorNote error={error} />
      <button type="submit" disabled={busy}>
        {busy ? "Saving…" : "Save ceiling"}
      </button>{" "}
      {done ? (
        <span role="status" class="saved">
          Saved.
        </span>
      ) : null}
    </form>
  );
}

function JsonField(props: {
  id: string;
  label: string;
  help: string;
  value: string | boolean | undefined;
  set: (v: string) => void;
  refusal: { field: string | null; message: string } | null;
}) {
  const invalid = props.refusal?.field === props.id;
  return (
    <div class={`field${invalid ? " invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      <textarea
        id={props.id}
        class="mono"
        rows={4}
        spellcheck={false}
        value={String(props.value ?? "")}
        onInput={(e) => props.set((e.target as HTMLTextAreaElement).value)}
        aria-describedby={invalid ? `help-${props.id} err-${props.id}` : `help-${props.id}`}
        aria-invalid={invalid || undefined}
      />
      <p class="help muted" id={`help-${props.id}`}>{props.help}</p>
      {invalid ? (
        <p class="field-error" id={`err-${props.id}`} role="alert">
          Refused: {props.refusal!.message}
        </p>
      ) : null}
    </div>
  );
}

function SmtpCredentialsField(props: { stored: boolean; value: SmtpCredentials; set: (c: SmtpCredentials) => void }) {
  const { stored, value, set } = props;
  const replace = () => set({ mode: "replace", username: "", password: "" });
  if (value.mode === "replace") {
    return (
      <fieldset class="smtp-credentials">
        <legend>SMTP credentials: {stored ? "replacing the stored ones" : "new"}</legend>
        <label>
          Username
          <input autocomplete="off" value={value.username} onInput={(e) => set({ ...value, username: (e.target as HTMLInputElement).value })} />
        </label>
        <label>
          Password
          <input type="password" autocomplete="new-password" value={value.password} onInput={(e) => set({ ...value, password: (e.target as HTMLInputElement).value })} />
        </label>
        <button type="button" class="secondary" onClick={() => set(stored ? { mode: "kept" } : { mode: "none" })}>
          {stored ? "Keep the stored ones" : "No credentials"}
        </button>
      </fieldset>
    );
  }
  return (
    <fieldset class="smtp-credentials">
      <legend>SMTP credentials</legend>
      <p role="status" class="credentials-state">
        {value.mode === "kept" ? "kept (not shown)" : stored ? "removed when saved" : "none"}
      </p>
      <button type="button" class="secondary" onClick={replace}>
        {stored ? "Replace…" : "Add…"}
      </button>{" "}
      {stored ? (
        value.mode === "kept" ? (
          <button type="button" class="secondary" onClick={() => set({ mode: "none" })}>
            Remove
          </button>
        ) : (
          <button type="button" class="secondary" onClick={() => set({ mode: "kept" })}>
            Keep them
          </button>
        )
      ) : null}
    </fieldset>
  );
}
