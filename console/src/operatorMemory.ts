// What this browser remembers for the operator: the ids of the tenants it created or opened
// and of the tokens it issued (never a token's secret). The API lists neither tenants nor
// tokens (issue 16: a gap reported to the lead), so without this the operator would have to
// retype every id. Kept in localStorage: ids only, not credentials.
const TENANTS = "coda.operator.tenants";
const TOKENS = "coda.operator.tokens";

export interface IssuedToken {
  id: string;
  issued_at_ms: number;
  revoked_at_ms: number | null;
}

function read<T>(key: string, fallback: T): T {
  try {
    const v = JSON.parse(localStorage.getItem(key) ?? "null");
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

function write(key: string, value: unknown) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Storage full or refused (a private window): the page still works, it just forgets.
  }
}

export const memory = {
  tenants: (): string[] => {
    const v = read<unknown>(TENANTS, []);
    return Array.isArray(v) ? v.filter((t): t is string => typeof t === "string") : [];
  },
  rememberTenant(tenant: string) {
    const all = memory.tenants().filter((t) => t !== tenant);
    write(TENANTS, [tenant, ...all].slice(0, 200));
  },
  forgetTenant(tenant: string) {
    write(TENANTS, memory.tenants().filter((t) => t !== tenant));
  },
  tokens(tenant: string): IssuedToken[] {
    const all = read<Record<string, IssuedToken[]>>(TOKENS, {});
    const list = all[tenant];
    return Array.isArray(list) ? list : [];
  },
  rememberToken(tenant: string, id: string, at: number) {
    const all = read<Record<string, IssuedToken[]>>(TOKENS, {});
    all[tenant] = [{ id, issued_at_ms: at, revoked_at_ms: null }, ...(all[tenant] ?? []).filter((t) => t.id !== id)];
    write(TOKENS, all);
  },
  markRevoked(tenant: string, id: string, at: number) {
    const all = read<Record<string, IssuedToken[]>>(TOKENS, {});
    const list = all[tenant] ?? [];
    const known = list.some((t) => t.id === id);
    all[tenant] = known
      ? list.map((t) => (t.id === id ? { ...t, revoked_at_ms: at } : t))
      : [{ id, issued_at_ms: 0, revoked_at_ms: at }, ...list];
    write(TOKENS, all);
  },
};
