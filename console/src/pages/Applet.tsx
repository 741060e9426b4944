// One applet: each version with what it declares (exits, capabilities, the coda interfaces
// it imports), vendor and signature for a package; retiring an uploaded version; and the
// applet's grant, edited within the operator's ceiling.
import { useState } from "preact/hooks";
import { api } from "../api/client";
import type { AppletDescription, AppletVersionEntry } from "../api/model";
import { bytes, Refusal } from "../refusal";
import { Time } from "../time";
import { ErrorNote, JsonText, Loading, Page, useLoad } from "../ui";
import { GrantEditor } from "./applets/GrantEditor";

export function Applet({ name }: { name: string }) {
  const entry = useLoad((signal) => api.get("/v1/applets/{name}", { path: { name }, signal }), [name]);
  return (
    <Page title={`Applet ${name}`}>
      <ErrorNote error={entry.error} />
      {entry.loading && !entry.value ? <Loading what="the applet" /> : null}
      {entry.value ? (
        <>
          <h2>Versions</h2>
          <ol class="versions applet-versions">
            {[...entry.value.versions].reverse().map((v) => (
              <li key={v.version}>
                <Version name={name} entry={v} onRetired={entry.reload} />
              </li>
            ))}
          </ol>
          <h2>Grant</h2>
          <GrantFor name={name} versions={entry.value.versions.map((v) => v.version)} />
        </>
      ) : null}
    </Page>
  );
}

function Version({ name, entry, onRetired }: { name: string; entry: AppletVersionEntry; onRetired: () => void }) {
  const d = useLoad(
    (signal) =>
      api.get("/v1/applets/{name}/versions/{version}", { path: { name, version: entry.version }, signal }),
    [name, entry.version, entry.retired],
  );
  const [confirm, setConfirm] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const retire = async () => {
    setError(null);
    try {
      await api.del("/v1/applets/{name}/versions/{version}", { path: { name, version: entry.version } });
      setConfirm(false);
      onRetired();
    } catch (err) {
      setError(err);
    }
  };
  const a: AppletDescription | undefined = d.value;
  return (
    <article aria-label={`${name}@${entry.version}`}>
      <h3>
        {name}@{entry.version} <span class="muted">({entry.origin}{entry.retired ? ", retired" : ""})</span>
      </h3>
      <ErrorNote error={d.error} />
      {a ? (
        <dl class="facts">
          {a.description ? (
            <>
              <dt>Description</dt>
              <dd class="description">{a.description}</dd>
            </>
          ) : null}
          <dt>Exits</dt>
          <dd>{a.exits.join(", ") || "none"}</dd>
          <dt>Declares (capabilities)</dt>
          <dd>{a.capabilities?.length ? a.capabilities.join(", ") : "none"}</dd>
          {a.coda_imports ? (
            <>
              <dt>Imports</dt>
              <dd>{a.coda_imports.join(", ") || "none"}</dd>
            </>
          ) : null}
          <dt>Needs a live party</dt>
          <dd>{a.needs_live_party ? "yes" : "no"}</dd>
          {a.size !== undefined ? (
            <>
              <dt>Size</dt>
              <dd>{bytes(a.size)}</dd>
            </>
          ) : null}
          {a.digest ? (
            <>
              <dt>Digest</dt>
              <dd class="mono digest">{a.digest}</dd>
            </>
          ) : null}
          {a.uploaded_at_ms ? (
            <>
              <dt>Uploaded</dt>
              <dd><Time ms={a.uploaded_at_ms} /></dd>
            </>
          ) : null}
          {a.retired_at_ms ? (
            <>
              <dt>Retired</dt>
              <dd><Time ms={a.retired_at_ms} /></dd>
            </>
          ) : null}
          <dt>Vendor</dt>
          <dd>{a.vendor ?? (a.origin === "built-in" ? "coda (built-in)" : "none: uploaded as a bare component")}</dd>
          {a.package ? (
            <>
              <dt>Signed by</dt>
              <dd class="mono">{a.package.signed_by}</dd>
              <dt>Manifest</dt>
              <dd><JsonText value={a.package.manifest} /></dd>
            </>
          ) : null}
          {a.config_schema ? (
            <>
              <dt>Config schema</dt>
              <dd>
                <details>
                  <summary>Show</summary>
                  <JsonText value={a.config_schema} />
                </details>
              </dd>
            </>
          ) : null}
        </dl>
      ) : d.loading ? <Loading what="the version" /> : null}
      {entry.origin !== "built-in" && !entry.retired ? (
        confirm ? (
          <div class="confirm" role="group" aria-label="Confirm retiring">
            <p>
              Retire {name}@{entry.version}? Published plans and runs in flight keep using it; publishing a plan that names it is refused from now on.
            </p>
            <button type="button" onClick={retire}>Retire {entry.version}</button>{" "}
            <button type="button" class="secondary" onClick={() => setConfirm(false)}>Keep it</button>
          </div>
        ) : (
          <button type="button" class="secondary" onClick={() => setConfirm(true)}>Retire…</button>
        )
      ) : null}
      <Refusal error={error} />
    </article>
  );
}

// A grant is for every version of the applet, or for one version (it then replaces the
// applet's own for that version).
function GrantFor({ name, versions }: { name: string; versions: string[] }) {
  const [key, setKey] = useState(name);
  return (
    <>
      {versions.length ? (
        <form class="inline" onSubmit={(e) => e.preventDefault()}>
          <label>
            Grant for
            <select value={key} onChange={(e) => setKey((e.target as HTMLSelectElement).value)}>
              <option value={name}>every version</option>
              {versions.map((v) => (
                <option key={v} value={`${name}@${v}`}>version {v} only</option>
              ))}
            </select>
          </label>
        </form>
      ) : null}
      <GrantEditor key={key} applet={key} />
    </>
  );
}
