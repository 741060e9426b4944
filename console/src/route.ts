// The console routes by the URL's fragment (`#/runs/…`): the server answers `/` alone and
// every other path stays the API's. Links are plain anchors, so the browser's history,
// middle-click and copy-link work.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  path: string[];
  query: URLSearchParams;
}

export function parse(hash: string): Route {
  const raw = hash.replace(/^#/, "") || "/";
  const [p = "/", q = ""] = raw.split("?", 2);
  return {
    path: p.split("/").filter(Boolean).map((s) => decodeURIComponent(s)),
    query: new URLSearchParams(q),
  };
}

export function href(path: string[], query?: Record<string, string | undefined | null>): string {
  const p = path.map(encodeURIComponent).join("/");
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v) q.set(k, v);
  const qs = q.toString();
  return `#/${p}${qs ? `?${qs}` : ""}`;
}

export function go(path: string[], query?: Record<string, string | undefined | null>) {
  location.hash = href(path, query);
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const on = () => setRoute(parse(location.hash));
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}
