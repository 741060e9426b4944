// Small pieces every page uses. Everything a tenant or an applet controls is rendered as
// text children (Preact creates text nodes): no page sets HTML from data.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError } from "./api/client";

export function ErrorNote({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as ApiError;
  const kind = e instanceof ApiError ? e.kind : "error";
  return (
    <div class="error" role="alert">
      <strong>{kind}</strong>: {e.message ?? String(error)}
      {e instanceof ApiError && e.retryAfter ? ` (try again in ${e.retryAfter} s)` : null}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

/// A value as JSON text, in a <pre>: never interpreted, however it looks.
export function JsonText({ value }: { value: unknown }) {
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status}`}>{status}</span>;
}

export function Page(props: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  useEffect(() => {
    document.title = `${props.title} · coda`;
  }, [props.title]);
  return (
    <section class="page" aria-labelledby="page-title">
      <header class="page-head">
        <h1 id="page-title">{props.title}</h1>
        {props.actions ? <div class="actions">{props.actions}</div> : null}
      </header>
      {props.children}
    </section>
  );
}

/// Loads once per `key`; `reload` loads again.
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, key: unknown[]) {
  const [state, setState] = useState<{ value?: T; error?: unknown; loading: boolean }>({
    loading: true,
  });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(abort.signal).then(
      (value) => !abort.signal.aborted && setState({ value, loading: false }),
      (error) =>
        !abort.signal.aborted &&
        (error as Error).name !== "AbortError" &&
        setState({ error, loading: false }),
    );
    return () => abort.abort();
    // `load` is a new closure each render: `key` says when it means something new.
  }, [...key, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}
