// The controls every keyset-paged list shares (runs, interactions): its order and its page
// size, read from the address and chosen in the filter form.

/// The console's order when the address names none; the API's own default is oldest.
export type Order = "newest" | "oldest";
export function orderOf(value: string | null): Order {
  return value === "oldest" ? "oldest" : "newest";
}

const PAGE_SIZES = ["25", "100", "500"];
export const DEFAULT_PAGE_SIZE = "25";

type OnChange = (e: Event) => void;

export function OrderField({ value, onChange }: { value: string | undefined; onChange: OnChange }) {
  return (
    <label>
      Order
      <select name="order" value={value ?? "newest"} onChange={onChange}>
        <option value="newest">Newest first</option>
        <option value="oldest">Oldest first</option>
      </select>
    </label>
  );
}

/// The usual sizes, and the address's own if it asked for another.
export function PageSizeField({ value, onChange }: { value: string | undefined; onChange: OnChange }) {
  const size = value ?? DEFAULT_PAGE_SIZE;
  return (
    <label>
      Per page
      <select name="limit" value={size} onChange={onChange}>
        {[...new Set([...PAGE_SIZES, size])].map((s) => (
          <option value={s} key={s}>
            {s}
          </option>
        ))}
      </select>
    </label>
  );
}
