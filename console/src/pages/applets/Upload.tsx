// Upload a component (.wasm) or a signed vendor package, picked or dropped. The tenant's
// limit is shown before sending; coda's refusal, if any, after. A file past the limit is
// still sent when asked: coda's answer is the one that counts.
import { useState } from "preact/hooks";
import { api } from "../../api/client";
import type { AppletDescription } from "../../api/model";
import { href } from "../../route";
import { bytes, Refusal } from "../../refusal";
import { useLoad } from "../../ui";

// coda's default when the operator sets no upload limit (host/server/src/applets.rs
// DEFAULT_UPLOAD_LIMIT): the ceiling answers null then.
const DEFAULT_UPLOAD_LIMIT = 32 * 1024 * 1024;

function contentType(file: File): string {
  return file.name.endsWith(".wasm") ? "application/wasm" : "application/vnd.coda.package";
}

export function Upload({ onUploaded }: { onUploaded: () => void }) {
  const ceiling = useLoad((signal) => api.get("/v1/ceiling", { signal }), []);
  const [file, setFile] = useState<File | null>(null);
  const [over, setOver] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [installed, setInstalled] = useState<AppletDescription | null>(null);
  const set = ceiling.value?.ceiling.upload_bytes;
  const limit = set ?? DEFAULT_UPLOAD_LIMIT;

  const pick = (f: File | null | undefined) => {
    setFile(f ?? null);
    setError(null);
    setInstalled(null);
  };
  const send = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    try {
      const a = await api.post("/v1/applets", { body: file, contentType: contentType(file) });
      setInstalled(a);
      onUploaded();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="upload" onSubmit={send} aria-label="Upload an applet">
      <p>
        Upload limit: <strong>{bytes(limit)}</strong>
        {ceiling.value ? (set == null ? " (coda's default)" : " (set by the operator)") : null}
      </p>
      <div
        class={`dropzone${over ? " over" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          pick(e.dataTransfer?.files[0]);
        }}
      >
        <label>
          A component (.wasm) or a signed package — choose one, or drop it here
          <input
            type="file"
            accept=".wasm,.codapkg,application/wasm,application/vnd.coda.package"
            onChange={(e) => pick((e.target as HTMLInputElement).files?.[0])}
          />
        </label>
        {file ? (
          <p>
            <span class="mono">{file.name}</span>, {bytes(file.size)}
            {file.size > limit ? <strong class="error-text"> — larger than the limit: coda will refuse it</strong> : null}
          </p>
        ) : null}
      </div>
      <button type="submit" disabled={!file || busy}>{busy ? "Uploading…" : "Upload"}</button>
      <Refusal error={error} />
      {installed ? (
        <p class="notice" role="status">
          Installed <a href={href(["applets", installed.name])}>{installed.name}@{installed.version}</a>
          {installed.capabilities?.length ? `; it needs ${installed.capabilities.join(", ")}: grant them before a plan uses it.` : "."}
        </p>
      ) : null}
    </form>
  );
}
