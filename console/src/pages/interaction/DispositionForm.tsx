// The agent's disposition for a completed interaction whose skill asks for one: a code,
// an amount when the code takes one, notes. coda refuses one the skill does not offer.
import { useState } from "preact/hooks";
import { api } from "../../api/client";
import type { Interaction } from "../../api/model";
import { JsonText } from "../../ui";
import { Refusal } from "../../refusal";

export function DispositionForm({ i, onSubmitted }: { i: Interaction; onSubmitted: () => void }) {
  const [code, setCode] = useState("");
  const [amount, setAmount] = useState("");
  const [notes, setNotes] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (i.disposition) {
    return (
      <>
        <p>Submitted:</p>
        <JsonText value={i.disposition} />
      </>
    );
  }
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const body: Record<string, unknown> = { code };
    if (amount.trim()) {
      const n = Number(amount);
      if (!Number.isFinite(n)) {
        setError(new Error(`Amount: "${amount}" is not a number`));
        return;
      }
      body.amount = n;
    }
    if (notes.trim()) body.notes = notes;
    setBusy(true);
    try {
      const answer = await api.post("/v1/interactions/{id}/disposition", { path: { id: i.id }, body });
      setDone(`Submitted; ${answer.woken.length} waiting run(s) woken.`);
      onSubmitted();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="inline" onSubmit={submit} aria-label="Submit disposition">
      {i.skill ? null : <p class="muted">This interaction has no skill, so coda will likely refuse a disposition.</p>}
      <label>
        Code
        <input required value={code} onInput={(e) => setCode((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Amount
        <input inputMode="decimal" value={amount} onInput={(e) => setAmount((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Notes
        <input value={notes} onInput={(e) => setNotes((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit" disabled={busy || !code.trim()}>Submit disposition</button>
      <Refusal error={error} />
      {done ? <p class="notice" role="status">{done}</p> : null}
    </form>
  );
}
