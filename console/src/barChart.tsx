// A small bar chart drawn as SVG (no chart library: a few hundred bytes instead of tens of
// kilobytes). It is an image with a title and a description for screen readers, each bar
// with its own title (the value on hover); the page gives the same numbers as a table.
export interface Bar {
  label: string; // the day, short
  long: string; // the day, in full (for the bar's title)
  value: number;
}

const W = 320;
const H = 120;
const PAD = { top: 8, right: 6, bottom: 18, left: 6 };

export function BarChart({ id, title, unit, bars }: { id: string; title: string; unit: string; bars: Bar[] }) {
  const max = Math.max(0, ...bars.map((b) => b.value));
  const total = bars.reduce((s, b) => s + b.value, 0);
  const inner = { w: W - PAD.left - PAD.right, h: H - PAD.top - PAD.bottom };
  const step = bars.length ? inner.w / bars.length : inner.w;
  const bw = Math.max(1, step * 0.72);
  const desc = bars.length
    ? `${total.toLocaleString()} ${unit} in all, at most ${max.toLocaleString()} in a day, from ${bars[0]!.long} to ${bars[bars.length - 1]!.long}.`
    : "No days.";
  // Every label would crowd a month: the last (today) and about six before it, apart.
  const every = Math.max(1, Math.ceil(bars.length / 7));
  return (
    <figure class="chart" data-metric={id}>
      <figcaption>
        <span class="chart-title">{title}</span> <span class="chart-total">{total.toLocaleString()}</span>
      </figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-labelledby={`${id}-t ${id}-d`}>
        <title id={`${id}-t`}>{`${title} per day`}</title>
        <desc id={`${id}-d`}>{desc}</desc>
        <line class="axis" x1={PAD.left} x2={W - PAD.right} y1={H - PAD.bottom} y2={H - PAD.bottom} />
        {bars.map((b, i) => {
          const h = max > 0 ? (b.value / max) * inner.h : 0;
          const x = PAD.left + i * step + (step - bw) / 2;
          return (
            <g key={i} class="bar">
              <rect x={x} y={H - PAD.bottom - h} width={bw} height={Math.max(h, b.value > 0 ? 1 : 0)}>
                <title>{`${b.long}: ${b.value.toLocaleString()} ${unit}`}</title>
              </rect>
              {(i % every === 0 && bars.length - 1 - i >= every) || i === bars.length - 1 ? (
                <text x={x + bw / 2} y={H - 4} text-anchor="middle" aria-hidden="true">
                  {b.label}
                </text>
              ) : null}
            </g>
          );
        })}
        <text class="max" x={PAD.left + 2} y={PAD.top + 8} aria-hidden="true">
          {max > 0 ? `max ${compact(max)}` : "none"}
        </text>
      </svg>
    </figure>
  );
}

function compact(n: number): string {
  return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(n);
}
