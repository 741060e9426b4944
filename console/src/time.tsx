// Times in the viewer's own zone, with the UTC instant on hover (and for screen readers,
// in the element's datetime).
const local = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  timeZoneName: "short",
});

export function Time({ ms }: { ms: number | null | undefined }) {
  if (ms === null || ms === undefined) return <span class="muted">—</span>;
  const date = new Date(ms);
  const utc = date.toISOString();
  return (
    <time dateTime={utc} title={`${utc} (UTC)`}>
      {local.format(date)}
    </time>
  );
}

export function duration(us: number): string {
  if (us < 1000) return `${us} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

export function number(n: number): string {
  return n.toLocaleString();
}
