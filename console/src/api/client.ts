// The console's one way to the API: paths and their parameters are checked against coda's
// OpenAPI document (schema.d.ts, generated from api/openapi.json by openapi-typescript), the
// token goes as the bearer header, and every refusal becomes an ApiError carrying the API's
// own `{error: {kind, message}}`.
import type { paths } from "./schema";
import { session } from "../session";
import type { GetAnswers, PatchAnswers, PostAnswers, PutAnswers } from "./model";

type Method = "get" | "put" | "post" | "patch" | "delete";

// The paths that have `method`.
type PathsWith<M extends Method> = {
  [P in keyof paths]: paths[P][M] extends { parameters: unknown } ? P : never;
}[keyof paths];

type Params<P extends keyof paths, M extends Method> = paths[P][M] extends {
  parameters: infer X;
}
  ? X
  : never;

// `{path?: …, query?: …}` as the operation declares them (path parameters required when
// the path has any).
type Args<P extends keyof paths, M extends Method> = {
  path?: Params<P, M> extends { path: infer A } ? A : never;
  query?: Params<P, M> extends { query?: infer Q } ? Q : never;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
};

/// Sent on `window` when the API refuses the session's token.
export const SIGNED_OUT = "coda:signed-out";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly kind: string,
    message: string,
    readonly problems: Problem[] = [],
    readonly retryAfter: string | null = null,
  ) {
    super(message);
  }
}

export interface Problem {
  node: string | null;
  field: string;
  message: string;
}

export function url(path: string, args: { path?: unknown; query?: unknown } = {}): string {
  const pathArgs = (args.path ?? {}) as Record<string, string | number>;
  let out = path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const v = pathArgs[name];
    if (v === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(String(v));
  });
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries((args.query ?? {}) as Record<string, unknown>)) {
    if (v !== undefined && v !== null && v !== "") query.set(k, String(v));
  }
  const q = query.toString();
  if (q) out += `?${q}`;
  return out;
}

export async function request<T>(
  method: Method,
  path: string,
  args: { path?: unknown; query?: unknown; body?: unknown; contentType?: string; signal?: AbortSignal } = {},
  token: string | null = session.token(),
): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (args.body !== undefined) {
    headers["Content-Type"] = args.contentType ?? "application/json";
    // A string or a file's bytes (an applet upload) go as they are; anything else as JSON.
    body =
      typeof args.body === "string" || args.body instanceof Blob || args.body instanceof ArrayBuffer
        ? (args.body as BodyInit)
        : JSON.stringify(args.body);
  }
  let response: Response;
  try {
    response = await fetch(url(path, args), {
      method: method.toUpperCase(),
      headers,
      body,
      signal: args.signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "unreachable", `coda did not answer: ${(e as Error).message}`);
  }
  const text = await response.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // A proxy's HTML error page, say: reported below as the status.
  }
  if (!response.ok) {
    if (response.status === 401 && token !== null && token === session.token()) {
      // The token of this session was revoked (or the operator's changed): back to the
      // sign-in page, with the API's reason.
      session.clear();
      dispatchEvent(new CustomEvent(SIGNED_OUT, { detail: (json as any)?.error?.message ?? "the token was refused" }));
    }
    const err = (json as { error?: { kind?: string; message?: string }; problems?: Problem[] })
      ?.error;
    const problems =
      (json as { error?: { problems?: Problem[] } })?.error?.problems ?? [];
    throw new ApiError(
      response.status,
      err?.kind ?? "http",
      err?.message ?? `${response.status} ${response.statusText}`,
      problems,
      response.headers.get("Retry-After"),
    );
  }
  return json as T;
}

// Typed entry points: `path` must be a documented path with that method, its parameters
// those the document declares; the answer's type is the console's reading of it (model.ts).
type Answer<Map, P> = P extends keyof Map ? Map[P] : unknown;

export const api = {
  get: <P extends PathsWith<"get">>(path: P, args?: Args<P, "get">) =>
    request<Answer<GetAnswers, P>>("get", path, args),
  post: <P extends PathsWith<"post">>(path: P, args?: Args<P, "post">) =>
    request<Answer<PostAnswers, P>>("post", path, args),
  put: <P extends PathsWith<"put">>(path: P, args?: Args<P, "put">) =>
    request<Answer<PutAnswers, P>>("put", path, args),
  patch: <P extends PathsWith<"patch">>(path: P, args?: Args<P, "patch">) =>
    request<Answer<PatchAnswers, P>>("patch", path, args),
  del: <P extends PathsWith<"delete">>(path: P, args?: Args<P, "delete">) =>
    request<unknown>("delete", path, args),
};
