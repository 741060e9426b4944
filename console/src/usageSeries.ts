// A tenant's usage per day, the viewer's days (midnight to midnight in their zone): one
// request, `GET /v1/usage?bucket=hour` from the first day's midnight, its hours added up
// into the days they fall in. Hours, not the API's UTC-free `day` buckets of 24 h, because
// a day of the viewer's is not always 24 h (daylight saving) and hours add up to any of
// them. MAX_DAYS of hours (744) stay within the API's 1,000 buckets.
import { api } from "./api/client";
import type { UsageCounts } from "./api/model";

export const MAX_DAYS = 31;

export interface DayUsage {
  start: number;
  end: number;
  usage: UsageCounts;
}

const COUNTS = [
  "invocations",
  "fuel_used",
  "invocation_ms",
  "emails_sent",
  "email_calls",
  "http_calls",
  "sql_calls",
  "follow_ups",
  "kv_calls",
] as const;

function zero(): UsageCounts {
  return { invocations: 0, fuel_used: 0, invocation_ms: 0, emails_sent: 0, email_calls: 0, http_calls: 0, sql_calls: 0, follow_ups: 0 };
}

/// Adds `from` into `into`; a count this coda does not give (kv before the key-value store)
/// stays undefined.
function add(into: UsageCounts, from: UsageCounts) {
  for (const k of COUNTS) {
    const v = from[k];
    if (v !== undefined) into[k] = (into[k] ?? 0) + v;
  }
}

/// The `days` days ending today (in the viewer's zone), oldest first: [start, end) each,
/// today's ending now.
export function dayWindows(days: number, now = Date.now()): { start: number; end: number }[] {
  const n = Math.max(1, Math.min(MAX_DAYS, Math.floor(days)));
  const out: { start: number; end: number }[] = [];
  const today = new Date(now);
  today.setHours(0, 0, 0, 0);
  for (let i = n - 1; i >= 0; i--) {
    const start = new Date(today);
    start.setDate(today.getDate() - i);
    const next = new Date(start);
    next.setDate(start.getDate() + 1);
    // Days are not all 24 h (daylight saving): the calendar says where one ends.
    out.push({ start: start.getTime(), end: Math.min(next.getTime(), now) });
  }
  return out.filter((w) => w.end > w.start);
}

export async function usageByDay(days: number, signal: AbortSignal): Promise<DayUsage[]> {
  const windows = dayWindows(days);
  const first = windows[0];
  const last = windows[windows.length - 1];
  if (!first || !last) return [];
  const usage = await api.get("/v1/usage", {
    query: { since: String(first.start), until: String(last.end), bucket: "hour" },
    signal,
  });
  const out: DayUsage[] = windows.map((w) => ({ ...w, usage: zero() }));
  for (const hour of usage.buckets ?? []) {
    const at = Date.parse(hour.since);
    const day = out.find((d) => d.start <= at && at < d.end);
    if (day) add(day.usage, hour);
  }
  return out;
}
