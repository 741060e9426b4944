// The signed-in token: in sessionStorage (this tab only, gone when it closes), sent only as
// the bearer header. No cookies, so no CSRF.
export type Role = "tenant" | "operator";

const TOKEN = "coda.token";
const ROLE = "coda.role";

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN),
  role: (): Role | null => {
    const r = sessionStorage.getItem(ROLE);
    return r === "tenant" || r === "operator" ? r : null;
  },
  set(token: string, role: Role) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(ROLE, role);
  },
  clear() {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(ROLE);
  },
};
