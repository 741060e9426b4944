// Clone Interaction: a new active outbound interaction from this one, assigned to the
// caller, its customer prefilled from the original.
import { useState } from "preact/hooks";
import { api } from "../../api/client";
import type { Interaction } from "../../api/model";
import { href } from "../../route";
import { Refusal } from "../../refusal";

const CHANNELS = ["voice", "sms", "email", "task"];

export function CloneForm({ i }: { i: Interaction }) {
  const [channel, setChannel] = useState(CHANNELS.includes(i.channel) ? i.channel : "voice");
  const [queue, setQueue] = useState("");
  const [subject, setSubject] = useState(i.details?.subject ?? "");
  const [error, setError] = useState<unknown>(null);
  const [made, setMade] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setBusy(true);
    try {
      const body: Record<string, unknown> = { channel, queue };
      if (subject.trim()) body.subject = subject;
      const clone = await api.post("/v1/interactions/{id}/clone", { path: { id: i.id }, body });
      setMade(clone.id);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="inline" onSubmit={submit} aria-label="Clone interaction">
      <label>
        Channel
        <select value={channel} onChange={(e) => setChannel((e.target as HTMLSelectElement).value)}>
          {CHANNELS.map((c) => <option key={c} value={c}>{c}</option>)}
        </select>
      </label>
      <label>
        Queue
        <input required value={queue} onInput={(e) => setQueue((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        Subject
        <input value={subject} onInput={(e) => setSubject((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit" disabled={busy || !queue.trim()}>Clone</button>
      <Refusal error={error} />
      {made ? (
        <p class="notice" role="status">
          Cloned as <a href={href(["interactions", made])}>{made}</a>.
        </p>
      ) : null}
    </form>
  );
}
