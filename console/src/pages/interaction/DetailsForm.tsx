// The editable details of a completed interaction, sent as a JSON merge patch of what
// changed (an emptied field is cleared). Who completed it and its activity are shown
// read-only; asking coda to change one answers its reason, shown as it gives it.
import { useState } from "preact/hooks";
import { api } from "../../api/client";
import type { Interaction } from "../../api/model";
import { Refusal } from "../../refusal";

const TEXT_FIELDS = [
  ["subject", "Subject"],
  ["type", "Type"],
  ["result", "Result"],
] as const;
const CUSTOMER_FIELDS = [
  ["name", "Customer name", "text"],
  ["phone", "Customer phone", "tel"],
  ["email", "Customer email", "email"],
] as const;

function initial(i: Interaction) {
  const d = i.details;
  return {
    subject: d?.subject ?? "",
    type: d?.type ?? "",
    result: d?.result ?? "",
    notes: d?.notes ?? "",
    name: d?.customer.name ?? "",
    phone: d?.customer.phone ?? "",
    email: d?.customer.email ?? "",
    custom: JSON.stringify(d?.custom_fields ?? {}, null, 2),
  };
}

type Form = ReturnType<typeof initial>;

// Only what changed: "" clears a field (null in a merge patch).
function patchOf(before: Form, after: Form): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const value = (s: string) => (s.trim() === "" ? null : s);
  for (const k of ["subject", "type", "result", "notes"] as const) {
    if (after[k] !== before[k]) patch[k] = value(after[k]);
  }
  const customer: Record<string, unknown> = {};
  for (const k of ["name", "phone", "email"] as const) {
    if (after[k] !== before[k]) customer[k] = value(after[k]);
  }
  if (Object.keys(customer).length) patch.customer = customer;
  if (after.custom !== before.custom) {
    const parsed = after.custom.trim() === "" ? {} : JSON.parse(after.custom);
    const old = JSON.parse(before.custom) as Record<string, unknown>;
    // Removed fields become null: the merge patch's way to delete one.
    for (const k of Object.keys(old)) if (!(k in parsed)) parsed[k] = null;
    patch.custom_fields = parsed;
  }
  return patch;
}

export function DetailsForm({ i, onSaved }: { i: Interaction; onSaved: () => void }) {
  const start = initial(i);
  const [form, setForm] = useState<Form>(start);
  const [error, setError] = useState<unknown>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [why, setWhy] = useState<unknown>(null);
  const set = (k: keyof Form) => (e: Event) =>
    setForm({ ...form, [k]: (e.target as HTMLInputElement).value });

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setSaved(null);
    let patch;
    try {
      patch = patchOf(start, form);
    } catch (err) {
      setError(new Error(`Custom fields: not JSON (${(err as Error).message})`));
      return;
    }
    if (Object.keys(patch).length === 0) {
      setSaved("Nothing changed.");
      return;
    }
    setBusy(true);
    try {
      await api.patch("/v1/interactions/{id}", { path: { id: i.id }, body: patch });
      setSaved(`Saved: ${Object.keys(patch).join(", ")}.`);
      onSaved();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  // A change to a read-only field goes to coda as it is, so the reason shown is coda's.
  const askToChange = async (field: string, value: unknown) => {
    setWhy(null);
    try {
      await api.patch("/v1/interactions/{id}", { path: { id: i.id }, body: { [field]: value } });
    } catch (err) {
      setWhy(err);
    }
  };

  return (
    <div class="details-editor">
      <form class="stacked" onSubmit={save} aria-label="Edit details">
        {TEXT_FIELDS.map(([k, label]) => (
          <label key={k}>
            {label}
            <input value={form[k]} onInput={set(k)} maxLength={1024} />
          </label>
        ))}
        <label>
          Notes
          <textarea rows={4} value={form.notes} onInput={set("notes")} />
        </label>
        {CUSTOMER_FIELDS.map(([k, label, type]) => (
          <label key={k}>
            {label}
            <input value={form[k]} onInput={set(k)} type={type as "text"} />
          </label>
        ))}
        <label>
          Custom fields (a JSON object; a field removed here is deleted)
          <textarea rows={4} class="mono" value={form.custom} onInput={set("custom")} spellcheck={false} />
        </label>
        <div>
          <button type="submit" disabled={busy}>Save details</button>
        </div>
        <Refusal error={error} />
        {saved ? <p class="notice" role="status">{saved}</p> : null}
      </form>
      <fieldset class="readonly">
        <legend>Kept as it happened (read-only)</legend>
        {(
          [
            ["channel", "Channel", i.channel],
            ["agent", "Agent", i.agent],
            ["completed_by", "Completed by", i.completed_by],
            ["completed_at_ms", "Completed at", i.completed_at_ms],
            ["skill", "Skill", i.skill],
          ] as const
        ).map(([field, label, value]) => (
          <div class="readonly-field" key={field}>
            <label>
              {label}
              <input
                readOnly
                value={value === null ? "—" : field === "completed_at_ms" ? new Date(value as number).toLocaleString() : String(value)}
                title={field === "completed_at_ms" && value !== null ? `${new Date(value as number).toISOString()} (UTC)` : undefined}
              />
            </label>
            <button
              type="button"
              class="secondary"
              onClick={() => askToChange(field, value)}
              aria-label={`Try to change ${label.toLowerCase()}`}
            >
              Try to change
            </button>
          </div>
        ))}
        {why ? (
          <div role="status" aria-label="Why read-only">
            <Refusal error={why} />
          </div>
        ) : (
          <p class="muted">Try to change one to see coda's reason.</p>
        )}
      </fieldset>
    </div>
  );
}
