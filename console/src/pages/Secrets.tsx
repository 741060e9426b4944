// The tenant's secrets by name. A value is write-only: set or replaced here, never shown
// back (coda answers names alone), and the field is cleared once it is sent.
import { useState } from "preact/hooks";
import { api } from "../api/client";
import { Refusal } from "../refusal";
import { Time } from "../time";
import { ErrorNote, Loading, Page, useLoad } from "../ui";

export function Secrets() {
  const list = useLoad((signal) => api.get("/v1/secrets", { signal }), []);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [note, setNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState<string | null>(null);
  const secrets = (list.value?.secrets ?? []).map((s) =>
    typeof s === "string" ? { name: s, updated_at_ms: undefined as number | undefined } : (s as { name: string; updated_at_ms?: number }),
  );

  const save = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setNote(null);
    setBusy(true);
    try {
      await api.put("/v1/secrets/{name}", { path: { name }, body: { value } });
      setNote(`Stored ${name}; its value is not shown again.`);
      setValue("");
      setName("");
      list.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const remove = async (n: string) => {
    setError(null);
    setNote(null);
    try {
      await api.del("/v1/secrets/{name}", { path: { name: n } });
      setNote(`Deleted ${n}.`);
      setConfirm(null);
      list.reload();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <Page title="Secrets">
      <ErrorNote error={list.error} />
      {list.loading && !list.value ? <Loading what="secrets" /> : null}
      {list.value && secrets.length === 0 ? <p>No secrets yet.</p> : null}
      {secrets.length ? (
        <table class="list" aria-label="Secrets">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Set</th>
              <th scope="col"><span class="visually-hidden">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {secrets.map((s) => (
              <tr key={s.name}>
                <td data-label="Name" class="mono">{s.name}</td>
                <td data-label="Set"><Time ms={s.updated_at_ms} /></td>
                <td data-label="">
                  {confirm === s.name ? (
                    <span role="group" aria-label={`Confirm deleting ${s.name}`}>
                      <button type="button" onClick={() => remove(s.name)}>Delete {s.name}</button>{" "}
                      <button type="button" class="secondary" onClick={() => setConfirm(null)}>Keep</button>
                    </span>
                  ) : (
                    <button type="button" class="secondary" onClick={() => setConfirm(s.name)} aria-label={`Delete ${s.name}…`}>
                      Delete…
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <h2>Set a secret</h2>
      <form class="inline" onSubmit={save} aria-label="Set a secret">
        <label>
          Name
          <input required value={name} list="secret-names" onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        </label>
        <datalist id="secret-names">
          {secrets.map((s) => <option key={s.name} value={s.name} />)}
        </datalist>
        <label>
          Value (write-only)
          <input
            required
            type="password"
            autoComplete="new-password"
            value={value}
            onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" disabled={busy || !name.trim() || !value}>Store</button>
      </form>
      <Refusal error={error} />
      {note ? <p class="notice" role="status">{note}</p> : null}
    </Page>
  );
}
