// A run's live tail (GET /v1/runs/{id}/tail, server-sent events). EventSource cannot send
// the bearer header, so this reads the stream with fetch and parses the events itself;
// when the connection drops it reconnects with Last-Event-ID, so no step is missed or shown
// twice (the caller also keys steps by their seq).
import { url } from "./api/client";
import { session } from "./session";
import type { Step } from "./api/model";

export interface TailHandlers {
  step(step: Step): void;
  end(status: string | null): void;
  error(message: string): void;
}

export function tailRun(id: string, on: TailHandlers): () => void {
  const abort = new AbortController();
  let lastId: string | null = null;
  let ended = false;

  const run = async () => {
    let failures = 0;
    while (!ended && !abort.signal.aborted) {
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        const token = session.token();
        if (token) headers.Authorization = `Bearer ${token}`;
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const response = await fetch(url("/v1/runs/{id}/tail", { path: { id } }), {
          headers,
          signal: abort.signal,
          credentials: "omit",
          cache: "no-store",
        });
        if (!response.ok || !response.body) {
          const body = (await response.json().catch(() => null)) as {
            error?: { message?: string };
          } | null;
          on.error(body?.error?.message ?? `the live tail answered ${response.status}`);
          if (response.status === 429) {
            await sleep(5000, abort.signal);
            continue;
          }
          return;
        }
        failures = 0;
        await read(response.body, (event, data, eventId) => {
          if (eventId !== null) lastId = eventId;
          if (event === "step") on.step(JSON.parse(data) as Step);
          else if (event === "end") {
            ended = true;
            on.end((JSON.parse(data) as { status?: string | null }).status ?? null);
          } else if (event === "error") {
            on.error((JSON.parse(data) as { message?: string }).message ?? "the tail failed");
          }
        });
      } catch (e) {
        if (abort.signal.aborted) return;
        failures += 1;
        on.error(`the live tail was cut (${(e as Error).message}); reconnecting`);
      }
      if (!ended) await sleep(Math.min(30000, 500 * 2 ** failures), abort.signal);
    }
  };
  void run();
  return () => abort.abort();
}

async function read(
  body: ReadableStream<Uint8Array>,
  emit: (event: string, data: string, id: string | null) => void,
) {
  const reader = body.pipeThrough(new TextDecoderStream() as unknown as ReadableWritablePair<string, Uint8Array>).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut: number;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      let event = "message";
      let id: string | null = null;
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      }
      if (data.length) emit(event, data.join("\n"), id);
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
