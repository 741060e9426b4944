// The operator's editor of a tenant's ceiling: a form for the ceiling's fields, and the SMTP
// server and databases as JSON. Saving PUTs the whole document; a refusal is shown beside
// the field the server names.
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
  // The view has no SMTP credentials and says whether there are some: the editor sends
  // what it shows, so credentials must be given again to keep them (noted on the page).
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

export function CeilingEditor({ tenant, view }: { tenant: string; view: CeilingView }) {
  const [values, setValues] = useState<Values>(() => valuesOf(view));
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
    const body = { ceiling: ceiling as Partial<Ceiling>, smtp: json(values["json.smtp"], null), databases: json(values["json.databases"], {}) };
    try {
      const answer = await api.put("/v1/operator/tenants/{tenant}/ceiling", { path: { tenant }, body });
      setValues(valuesOf(answer));
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
        help={
          view.smtp?.authenticated
            ? "host, port, tls, from, timeout_ms. Its credentials are not shown: give username and password again to keep them, or saving drops them."
            : "host, port, tls, from, timeout_ms, and username and password if it needs them; empty: none."
        }
        value={values["json.smtp"]}
        set={(v) => set("json.smtp", v)}
        refusal={refusal}
      />
      <JsonField
        id="databases"
        label="Databases (JSON)"
        help="Name to URL (sqlite:PATH or postgres://…). Credentials are not shown: give a URL with them again to keep them."
        value={values["json.databases"]}
        set={(v) => set("json.databases", v)}
        refusal={refusal}
      />
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
