// The tenant's usage over time: one small chart per measure, a day a bar, and the same
// numbers as a table (for screen readers, copying, and anyone who prefers figures).
import type { UsageCounts as UsageTotals } from "../api/model";
import { BarChart } from "../barChart";
import { go, type Route } from "../route";
import { Time } from "../time";
import { ErrorNote, Loading, Page, useLoad } from "../ui";
import { MAX_DAYS, usageByDay, type DayUsage } from "../usageSeries";

const RANGES = [7, 14, MAX_DAYS];

interface Measure {
  id: string;
  title: string;
  unit: string;
  of: (u: UsageTotals) => number | undefined;
}

const MEASURES: Measure[] = [
  { id: "invocations", title: "Invocations", unit: "invocations", of: (u) => u.invocations },
  { id: "fuel", title: "Fuel", unit: "fuel", of: (u) => u.fuel_used },
  { id: "emails", title: "Emails sent", unit: "emails", of: (u) => u.emails_sent },
  { id: "http", title: "HTTP calls", unit: "calls", of: (u) => u.http_calls },
  { id: "sql", title: "SQL statements", unit: "statements", of: (u) => u.sql_calls },
  { id: "kv", title: "Key-value calls", unit: "calls", of: (u) => u.kv_calls },
  { id: "follow-ups", title: "Follow-ups", unit: "follow-ups", of: (u) => u.follow_ups },
];

const dayShort = new Intl.DateTimeFormat(undefined, { month: "numeric", day: "numeric" });
const dayLong = new Intl.DateTimeFormat(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });

export function Usage({ route }: { route: Route }) {
  const asked = Number(route.query.get("days"));
  const days = RANGES.includes(asked) ? asked : 7;
  const series = useLoad((signal) => usageByDay(days, signal), [days]);
  // A measure this coda does not count (kv before the key-value store) is left out.
  const measures = MEASURES.filter((m) => series.value?.some((d) => m.of(d.usage) !== undefined) ?? true);
  return (
    <Page
      title="Usage"
      actions={
        <label class="range">
          Range{" "}
          <select value={String(days)} onChange={(e) => go(["usage"], { days: (e.target as HTMLSelectElement).value })}>
            {RANGES.map((r) => (
              <option key={r} value={String(r)}>
                last {r} days
              </option>
            ))}
          </select>
        </label>
      }
    >
      <ErrorNote error={series.error} />
      {series.loading && !series.value ? <Loading what="usage" /> : null}
      {series.value ? <Charts days={series.value} measures={measures} /> : null}
    </Page>
  );
}

function Charts({ days, measures }: { days: DayUsage[]; measures: Measure[] }) {
  const first = days[0];
  const last = days[days.length - 1];
  return (
    <>
      <p class="muted">
        Per day in your time zone, from <Time ms={first?.start} /> to <Time ms={last?.end} />.
      </p>
      <div class="charts">
        {measures.map((m) => (
          <BarChart
            key={m.id}
            id={`usage-${m.id}`}
            title={m.title}
            unit={m.unit}
            bars={days.map((d) => ({
              label: dayShort.format(d.start),
              long: dayLong.format(d.start),
              value: m.of(d.usage) ?? 0,
            }))}
          />
        ))}
      </div>
      <details class="usage-table">
        <summary>The same as a table</summary>
        <table class="list">
          <caption class="visually-hidden">Usage per day</caption>
          <thead>
            <tr>
              <th scope="col">Day</th>
              {measures.map((m) => (
                <th scope="col" key={m.id}>
                  {m.title}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {days.map((d) => (
              <tr key={d.start}>
                <th scope="row" data-label="Day">
                  {dayLong.format(d.start)}
                </th>
                {measures.map((m) => (
                  <td key={m.id} data-label={m.title}>
                    {(m.of(d.usage) ?? 0).toLocaleString()}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </details>
    </>
  );
}
