// The runs list with the API's filters and paging (`after` the last id of a page, never
// everything at once), newest first unless the viewer asks for oldest first. The page new
// runs land on is polled while it is open, so they appear without a reload: the first page
// newest first, the last one (not full) oldest first.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client";
import { RUN_STATUSES, whereNow, type RunPage } from "../api/model";
import { go, href, type Route } from "../route";
import { Time, toInstant, toLocal } from "../time";
import { DEFAULT_PAGE_SIZE, OrderField, orderOf, PageSizeField } from "../listControls";
import { ErrorNote, Loading, Page, Status, useLoad } from "../ui";

const FILTERS = ["plan", "status", "interaction", "since", "until", "order"] as const;
const POLL_MS = 2000;

export function Runs({ route }: { route: Route }) {
  const q = route.query;
  const query = {
    plan: q.get("plan") ?? undefined,
    status: q.get("status") ?? undefined,
    interaction: q.get("interaction") ?? undefined,
    since: q.get("since") ?? undefined,
    until: q.get("until") ?? undefined,
    order: orderOf(q.get("order")),
    after: q.get("after") ?? undefined,
    limit: Number(q.get("limit") ?? DEFAULT_PAGE_SIZE),
  };
  const page = useLoad(
    (signal) => api.get("/v1/runs", { query, signal }),
    [q.toString()],
  );
  // The page new runs land on grows as they start: look again while it is open and visible.
  const growing =
    page.value !== undefined && (query.order === "newest" ? query.after === undefined : page.value.next === null);
  useEffect(() => {
    if (!growing) return;
    const t = setInterval(() => {
      if (document.visibilityState === "visible") page.reload();
    }, POLL_MS);
    return () => clearInterval(t);
  }, [growing, q.toString()]);

  const [form, setForm] = useState<Record<string, string>>({});
  useEffect(() => {
    setForm({
      plan: q.get("plan") ?? "",
      status: q.get("status") ?? "",
      interaction: q.get("interaction") ?? "",
      since: toLocal(q.get("since")),
      until: toLocal(q.get("until")),
      order: orderOf(q.get("order")),
      limit: q.get("limit") ?? DEFAULT_PAGE_SIZE,
    });
  }, [q.toString()]);
  const set = (k: string) => (e: Event) =>
    setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const apply = (e: Event) => {
    e.preventDefault();
    go(["runs"], {
      plan: form.plan?.trim(),
      status: form.status,
      interaction: form.interaction?.trim(),
      since: toInstant(form.since ?? ""),
      until: toInstant(form.until ?? ""),
      order: form.order === "oldest" ? "oldest" : undefined,
      limit: form.limit === DEFAULT_PAGE_SIZE ? undefined : form.limit,
    });
  };
  const current = Object.fromEntries(
    [...FILTERS, "limit"].map((k) => [k, q.get(k) ?? undefined]),
  );

  return (
    <Page title="Runs">
      <form class="filters" onSubmit={apply} aria-label="Filter runs">
        <label>
          Plan
          <input name="plan" value={form.plan ?? ""} onInput={set("plan")} />
        </label>
        <label>
          Status
          <select name="status" value={form.status ?? ""} onChange={set("status")}>
            <option value="">any</option>
            {RUN_STATUSES.map((s) => (
              <option value={s} key={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Interaction
          <input name="interaction" value={form.interaction ?? ""} onInput={set("interaction")} />
        </label>
        <label>
          Created since
          <input type="datetime-local" name="since" value={form.since ?? ""} onInput={set("since")} />
        </label>
        <label>
          Created before
          <input type="datetime-local" name="until" value={form.until ?? ""} onInput={set("until")} />
        </label>
        <OrderField value={form.order} onChange={set("order")} />
        <PageSizeField value={form.limit} onChange={set("limit")} />
        <button type="submit">Apply</button>
        <a href={href(["runs"])}>Clear</a>
      </form>
      <ErrorNote error={page.error} />
      {page.loading && !page.value ? <Loading what="runs" /> : null}
      {page.value ? (
        page.value.runs.length === 0 ? (
          <p role="status">No runs match.</p>
        ) : (
          <table class="list runs">
            <caption class="visually-hidden">Runs, {query.order} first</caption>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Plan</th>
                <th scope="col">Status</th>
                <th scope="col">Node</th>
                <th scope="col">Interaction</th>
                <th scope="col">Started</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {page.value.runs.map((r) => (
                <tr key={r.id} data-run={r.id}>
                  <td data-label="Run">
                    <a href={href(["runs", r.id])} class="mono">
                      {r.id}
                    </a>
                  </td>
                  <td data-label="Plan">
                    <a href={href(["plans", r.plan], { version: String(r.plan_version) })}>
                      {r.plan}@{r.plan_version}
                    </a>
                  </td>
                  <td data-label="Status">
                    <Status status={r.status} />
                  </td>
                  <td data-label="Node">{whereNow(r) ?? "—"}</td>
                  <td data-label="Interaction">{r.interaction ?? "—"}</td>
                  <td data-label="Started">
                    <Time ms={r.created_at_ms} />
                  </td>
                  <td data-label="Updated">
                    <Time ms={r.updated_at_ms} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      ) : null}
      <nav class="pager" aria-label="Pages">
        {query.after ? <a href={href(["runs"], { ...current, after: undefined })}>First page</a> : null}
        {page.value?.next ? (
          <a href={href(["runs"], { ...current, after: page.value.next })} rel="next">
            Next page
          </a>
        ) : page.value ? (
          <span class="muted">
            {query.order === "newest" ? "Last page." : "Last page: new runs appear here as they start."}
          </span>
        ) : null}
      </nav>
    </Page>
  );
}
