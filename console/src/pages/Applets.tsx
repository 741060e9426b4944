// The tenant's applet catalog: built-in and uploaded, each with its versions; upload a new
// one (a component or a signed vendor package).
import { api } from "../api/client";
import type { AppletEntry } from "../api/model";
import { href } from "../route";
import { ErrorNote, Loading, Page, useLoad } from "../ui";
import { Upload } from "./applets/Upload";

export function Applets() {
  const list = useLoad((signal) => api.get("/v1/applets", { signal }), []);
  const applets = list.value?.applets ?? [];
  return (
    <Page title="Applets">
      <ErrorNote error={list.error} />
      {list.loading && !list.value ? <Loading what="applets" /> : null}
      {list.value ? (
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Applet</th>
              <th scope="col">Origin</th>
              <th scope="col">Versions</th>
              <th scope="col">Declares</th>
              <th scope="col">Imports</th>
              <th scope="col">Vendor</th>
            </tr>
          </thead>
          <tbody>
            {applets.map((a) => (
              <tr key={a.name}>
                <td data-label="Applet">
                  <a href={href(["applets", a.name])}>{a.name}</a>
                </td>
                <td data-label="Origin">{a.origins.join(", ")}</td>
                <td data-label="Versions">
                  {a.versions.map((v, n) => (
                    <span key={v.version}>
                      {n ? ", " : ""}
                      {v.retired ? <s title="retired">{v.version}</s> : v.version}
                      {v.retired ? <span class="visually-hidden"> (retired)</span> : null}
                    </span>
                  ))}
                </td>
                <Latest name={a.name} entry={a} />
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <h2>Upload an applet</h2>
      <Upload onUploaded={list.reload} />
    </Page>
  );
}

// What the newest version declares, imports and who signed it: one request per row, so the
// list shows before them.
function Latest({ name, entry }: { name: string; entry: AppletEntry }) {
  const newest = entry.versions.filter((v) => !v.retired).at(-1) ?? entry.versions.at(-1);
  const d = useLoad(
    (signal) =>
      newest
        ? api.get("/v1/applets/{name}/versions/{version}", { path: { name, version: newest.version }, signal })
        : Promise.resolve(null),
    [name, newest?.version],
  );
  const a = d.value;
  const list = (xs: string[] | undefined) => (xs === undefined ? "—" : xs.length ? xs.join(", ") : "nothing");
  return (
    <>
      <td data-label="Declares">{a ? list(a.capabilities) : "…"}</td>
      <td data-label="Imports">{a ? list(a.coda_imports) : "…"}</td>
      <td data-label="Vendor">
        {a ? (a.package ? `${a.package.vendor}, signed` : a.vendor ?? (a.origin === "built-in" ? "coda" : "unsigned")) : "…"}
      </td>
    </>
  );
}
