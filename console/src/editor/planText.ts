// A plan's text as the editor holds it, read in the browser only to draw the graph while
// typing: what is valid is the server's answer (`POST /v1/plans/validate`), never this.
// JSON is read by the browser itself; YAML by js-yaml (about 13 KB compressed), loaded
// only when the editor first needs it so that the console's first load stays small.
import type { PlanBody, PlanNode } from "../api/model";

const yaml = () => import("js-yaml");

export type PlanFormat = "yaml" | "json";

/// As the server tells them apart (coda-plan `Format::detect`): JSON starts with a brace.
export function formatOf(text: string): PlanFormat {
  return text.replace(/^\uFEFF/, "").trimStart().startsWith("{") ? "json" : "yaml";
}

export function contentType(format: PlanFormat): string {
  return format === "json" ? "application/json" : "application/yaml";
}

/// The text's plan in the shape the graph draws, or why it cannot be read. Whatever the
/// text holds is narrowed to strings: a half-typed plan must not break the drawing.
export async function readPlan(text: string): Promise<{ plan: PlanBody } | { error: string }> {
  let raw: unknown;
  try {
    raw = formatOf(text) === "json" ? JSON.parse(text) : (await yaml()).load(text);
  } catch (e) {
    return { error: (e as Error).message.split("\n")[0] ?? "unreadable" };
  }
  if (!isObject(raw)) return { error: "the plan is not a map of fields" };
  const nodes: Record<string, PlanNode> = {};
  if (isObject(raw.nodes)) {
    for (const [id, n] of Object.entries(raw.nodes)) {
      if (!isObject(n)) {
        nodes[id] = { applet: "" };
        continue;
      }
      const exits: Record<string, string> = {};
      if (isObject(n.exits)) {
        for (const [exit, target] of Object.entries(n.exits)) {
          if (typeof target === "string") exits[exit] = target;
        }
      }
      nodes[id] = {
        applet: typeof n.applet === "string" ? n.applet : "",
        config: n.config,
        exits,
        ...(typeof n.error === "string" ? { error: n.error } : {}),
      };
    }
  }
  return {
    plan: {
      name: typeof raw.name === "string" ? raw.name : "",
      start: typeof raw.start === "string" ? raw.start : "",
      nodes,
      ...(typeof raw.type === "string" ? { type: raw.type } : {}),
      ...(typeof raw.description === "string" ? { description: raw.description } : {}),
      ...(typeof raw.post_interaction === "string" ? { post_interaction: raw.post_interaction } : {}),
    },
  };
}

/// A stored plan (JSON) as YAML text to edit: people write plans in YAML (examples/plans).
export async function planToYaml(body: PlanBody): Promise<string> {
  return (await yaml()).dump(body, { lineWidth: 100, noRefs: true });
}

/// The line (1-based) a problem points at: the parser's "at line N" or, for a problem of a
/// node, the line that opens the node under `nodes`.
export function lineOf(text: string, problem: { node: string | null; message: string }): number | null {
  const at = /at line (\d+)/.exec(problem.message);
  if (at) return Number(at[1]);
  if (!problem.node) return null;
  const lines = text.split("\n");
  const nodesAt = lines.findIndex((l) => /^\s*"?nodes"?\s*:/.test(l));
  const id = problem.node.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const opens = new RegExp(`^\\s*["']?${id}["']?\\s*:`);
  const i = lines.findIndex((l, n) => n > nodesAt && opens.test(l));
  return i >= 0 ? i + 1 : null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
