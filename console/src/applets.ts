// What each applet version of a plan declares (its exits), fetched once per version.
import { api } from "./api/client";
import type { AppletVersion, PlanBody } from "./api/model";

const cache = new Map<string, Promise<AppletVersion | null>>();

export async function appletsOf(plan: PlanBody): Promise<Map<string, AppletVersion>> {
  const refs = [...new Set(Object.values(plan.nodes).map((n) => n.applet))];
  const found = await Promise.all(
    refs.map((r) => {
      let p = cache.get(r);
      if (!p) {
        const at = r.lastIndexOf("@");
        p = api
          .get("/v1/applets/{name}/versions/{version}", {
            path: { name: r.slice(0, at), version: r.slice(at + 1) },
          })
          .catch(() => null);
        cache.set(r, p);
      }
      return p.then((a) => [r, a] as const);
    }),
  );
  return new Map(found.filter((f): f is readonly [string, AppletVersion] => f[1] !== null));
}

export function forgetApplets() {
  cache.clear();
}
