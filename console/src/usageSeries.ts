// A tenant's usage per day. GET /v1/usage answers totals for one window, so the series is
// one request per day of the range (the viewer's days, midnight to midnight), a few at a
// time and never more than MAX_DAYS. A bucketed answer from the API would make this one
// request (reported to the lead, issue 16).
import { api } from "./api/client";
import type { Usage } from "./api/model";

export const MAX_DAYS = 31;
const AT_ONCE = 4;

export interface DayUsage {
  start: number;
  end: number;
  usage: Usage;
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
  const out: DayUsage[] = new Array(windows.length);
  let next = 0;
  const worker = async () => {
    while (next < windows.length) {
      const i = next++;
      const w = windows[i]!;
      const usage = await api.get("/v1/usage", { query: { since: String(w.start), until: String(w.end) }, signal });
      out[i] = { ...w, usage };
    }
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, windows.length) }, worker));
  return out;
}
