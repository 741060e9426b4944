// The tenant's applet catalog: built-in and uploaded, each with its versions; upload a new
// one (a component or a signed vendor package).
import { api } from "../api/client";
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
