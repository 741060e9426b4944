// The interactions list: the API's filters (status, channel, skill, first seen since and
// before) and keyset paging (`after` the last id of a page), newest first unless the viewer
// asks for oldest first. Each row links to the interaction's own page.
import { useEffect, useState } from "preact/hooks";
import { api } from "../api/client";
import { go, href, type Route } from "../route";
import { Time, toInstant, toLocal } from "../time";
import { DEFAULT_PAGE_SIZE, OrderField, orderOf, PageSizeField } from "../listControls";
import { ErrorNote, Loading, Page, Status, useLoad } from "../ui";

const FILTERS = ["status", "channel", "skill", "since", "until", "order"] as const;
const STATUSES = ["active", "completed"];
const CHANNELS = ["voice", "chat", "sms", "email", "task"];

export function Interactions({ route }: { route: Route }) {
  const q = route.query;
  const query = {
    status: q.get("status") ?? undefined,
    channel: q.get("channel") ?? undefined,
    skill: q.get("skill") ?? undefined,
    since: q.get("since") ?? undefined,
    until: q.get("until") ?? undefined,
    order: orderOf(q.get("order")),
    after: q.get("after") ?? undefined,
    limit: Number(q.get("limit") ?? DEFAULT_PAGE_SIZE),
  };
  const page = useLoad((signal) => api.get("/v1/interactions", { query, signal }), [q.toString()]);

  const [form, setForm] = useState<Record<string, string>>({});
  useEffect(() => {
    setForm({
      status: q.get("status") ?? "",
      channel: q.get("channel") ?? "",
      skill: q.get("skill") ?? "",
      since: toLocal(q.get("since")),
      until: toLocal(q.get("until")),
      order: orderOf(q.get("order")),
      limit: q.get("limit") ?? DEFAULT_PAGE_SIZE,
    });
  }, [q.toString()]);
  const set = (k: string) => (e: Event) => setForm({ ...form, [k]: (e.target as HTMLInputElement).value });
  const apply = (e: Event) => {
    e.preventDefault();
    go(["interactions"], {
      status: form.status,
      channel: form.channel,
      skill: form.skill?.trim(),
      since: toInstant(form.since ?? ""),
      until: toInstant(form.until ?? ""),
      order: form.order === "oldest" ? "oldest" : undefined,
      limit: form.limit === DEFAULT_PAGE_SIZE ? undefined : form.limit,
    });
  };
  const current = Object.fromEntries([...FILTERS, "limit"].map((k) => [k, q.get(k) ?? undefined]));
  const choice = (name: string, label: string, values: string[]) => (
    <label>
      {label}
      <select name={name} value={form[name] ?? ""} onChange={set(name)}>
        <option value="">any</option>
        {values.map((v) => (
          <option value={v} key={v}>
            {v}
          </option>
        ))}
      </select>
    </label>
  );

  return (
    <Page title="Interactions">
      <form class="filters" onSubmit={apply} aria-label="Filter interactions">
        {choice("status", "Status", STATUSES)}
        {choice("channel", "Channel", CHANNELS)}
        <label>
          Skill
          <input name="skill" value={form.skill ?? ""} onInput={set("skill")} />
        </label>
        <label>
          First seen since
          <input type="datetime-local" name="since" value={form.since ?? ""} onInput={set("since")} />
        </label>
        <label>
          First seen before
          <input type="datetime-local" name="until" value={form.until ?? ""} onInput={set("until")} />
        </label>
        <OrderField value={form.order} onChange={set("order")} />
        <PageSizeField value={form.limit} onChange={set("limit")} />
        <button type="submit">Apply</button>
        <a href={href(["interactions"])}>Clear</a>
      </form>
      <ErrorNote error={page.error} />
      {page.loading && !page.value ? <Loading what="interactions" /> : null}
      {page.value ? (
        page.value.interactions.length === 0 ? (
          <p role="status">No interactions match.</p>
        ) : (
          <table class="list interactions">
            <caption class="visually-hidden">Interactions, {query.order} first</caption>
            <thead>
              <tr>
                <th scope="col">Interaction</th>
                <th scope="col">Status</th>
                <th scope="col">Channel</th>
                <th scope="col">Skill</th>
                <th scope="col">First seen</th>
                <th scope="col">Updated</th>
                <th scope="col">Completed</th>
                <th scope="col">Runs</th>
                <th scope="col">Edits</th>
              </tr>
            </thead>
            <tbody>
              {page.value.interactions.map((i) => (
                <tr key={i.id} data-interaction={i.id}>
                  <td data-label="Interaction">
                    <a href={href(["interactions", i.id])} class="mono">
                      {i.id}
                    </a>
                  </td>
                  <td data-label="Status">
                    <Status status={i.status} />
                  </td>
                  <td data-label="Channel">{i.channel}</td>
                  <td data-label="Skill">{i.skill ?? "—"}</td>
                  <td data-label="First seen">
                    <Time ms={i.created_at_ms} />
                  </td>
                  <td data-label="Updated">
                    <Time ms={i.updated_at_ms} />
                  </td>
                  <td data-label="Completed">
                    <Time ms={i.completed_at_ms} />
                  </td>
                  <td data-label="Runs">
                    {i.runs ? <a href={href(["runs"], { interaction: i.id })}>{i.runs}</a> : "0"}
                  </td>
                  <td data-label="Edits">{i.edits}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )
      ) : null}
      <nav class="pager" aria-label="Pages">
        {query.after ? <a href={href(["interactions"], { ...current, after: undefined })}>First page</a> : null}
        {page.value?.next ? (
          <a href={href(["interactions"], { ...current, after: page.value.next })} rel="next">
            Next page
          </a>
        ) : page.value ? (
          <span class="muted">Last page.</span>
        ) : null}
      </nav>
    </Page>
  );
}
