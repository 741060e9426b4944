// An API refusal with each problem it names (a grant beyond the ceiling lists every field
// that passes it): the API's own words, as text.
import { ApiError } from "./api/client";
import { ErrorNote } from "./ui";

export function Refusal({ error }: { error: unknown }) {
  if (!error) return null;
  const problems = error instanceof ApiError ? error.problems : [];
  return (
    <>
      <ErrorNote error={error} />
      {problems.length > 1 ? (
        <ul class="problems" aria-label="Problems">
          {problems.map((p, i) => (
            <li key={i}>
              <code>{p.field}</code>: {p.message}
            </li>
          ))}
        </ul>
      ) : null}
    </>
  );
}

/// A size in bytes as people read it.
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
