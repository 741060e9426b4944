// What the API answers, as the console reads it. The OpenAPI document types most bodies as
// `object` today (issue 16, item 10); these follow the server's JSON (host/server/src
// api.rs `run_json`, `step_json`, plans.rs, runs.rs) and are to be replaced by the
// generated schemas once the document describes them.

export type RunStatus = "ready" | "parked" | "waiting" | "done" | "failed" | "cancelled";
export const RUN_STATUSES: RunStatus[] = [
  "ready",
  "parked",
  "waiting",
  "done",
  "failed",
  "cancelled",
];

export interface PlanSummary {
  name: string;
  type: string;
  version: number;
  created_at_ms: number;
}

export interface PlanNode {
  applet: string;
  config?: unknown;
  exits?: Record<string, string>;
  error?: string;
  retry?: unknown;
}

export interface PlanBody {
  name: string;
  type?: string;
  description?: string;
  start: string;
  post_interaction?: string;
  nodes: Record<string, PlanNode>;
}

export interface PlanVersion {
  plan: string;
  version: number;
  body: PlanBody;
}

export interface AppletVersion {
  name: string;
  version: string;
  description?: string;
  exits: string[];
  origin: string;
  retired: boolean;
}

export interface EventWait {
  event: string;
  on_event: string | null;
  node?: string | null;
}

export interface Run {
  id: string;
  plan: string;
  plan_version: number;
  interaction: string | null;
  status: RunStatus;
  node: string | null;
  attempt: number;
  due_at_ms: number | null;
  wait: EventWait | null;
  created_at_ms: number;
  updated_at_ms: number;
}

export interface LogLine {
  level: "trace" | "debug" | "info" | "warn" | "error";
  message: string;
}

export interface Step {
  seq: number;
  plan: string;
  plan_version: number;
  node: string;
  applet: string;
  attempt: number;
  result: Record<string, unknown>;
  note: string;
  fuel_used: number;
  duration_us: number;
  data_changes: Record<string, unknown>;
  at_ms: number;
  logs?: LogLine[];
}

export interface Effect {
  step_seq: number;
  call_seq: number;
  kind: string;
  digest: string;
  result: unknown;
  at_ms: number;
}

export interface RunDetail extends Run {
  data: Record<string, unknown>;
  journal: Step[];
  effects: Effect[];
}

export interface RunPage {
  runs: Run[];
  next: string | null;
}

// The node a run is at: a waiting run's record names the node the event leads to, its wait
// the node that waits.
export function whereNow(run: Run): string | null {
  if (run.status === "done" || run.status === "failed" || run.status === "cancelled") return null;
  return (run.status === "waiting" ? run.wait?.node : null) ?? run.node;
}

// The idempotency key a step's effects were sent with: the same for every attempt of the
// step (coda-flow `decide::idempotency_key`: the run and the first attempt's sequence).
export function idempotencyKey(run: string, step: Step): string {
  return `${run}/${Math.max(0, step.seq - (step.attempt - 1))}`;
}

export interface PlanVersions {
  plan: string;
  versions: { version: number; created_at_ms: number; digest: string }[];
}

/// `GET /v1/plans/{name}/diff` (plans.rs `diff`, `summary`): the text diff of two stored
/// bodies and what changed node by node (`summary` is null when a body no longer parses).
export interface PlanDiff {
  plan: string;
  from: number;
  to: number;
  identical: boolean;
  unified: string;
  summary: {
    nodes_added: string[];
    nodes_removed: string[];
    nodes_changed: {
      node: string;
      changed: ("applet" | "version" | "config" | "exits" | "error")[];
      from: { applet: string };
      to: { applet: string };
    }[];
    start: FieldChange | null;
    type: FieldChange | null;
    post_interaction: FieldChange | null;
    description: FieldChange | null;
  } | null;
}

export interface FieldChange {
  from: unknown;
  to: unknown;
}

export interface NewTenant {
  tenant: string;
  token: string;
  token_id: string;
}

// What each GET answers, by path.
export interface GetAnswers {
  "/v1/plans": { plans: PlanSummary[] };
  "/v1/plans/{name}": PlanVersion;
  "/v1/plans/{name}/versions": PlanVersions;
  "/v1/plans/{name}/versions/{version}": PlanVersion;
  "/v1/plans/{name}/diff": PlanDiff;
  "/v1/applets/{name}/versions/{version}": AppletVersion;
  "/v1/runs": RunPage;
  "/v1/runs/{id}": RunDetail;
}

export interface PostAnswers {
  "/v1/plans/validate": { valid: true; plan: string; type: string };
  "/v1/operator/tenants": NewTenant;
}

export interface PutAnswers {
  "/v1/plans/{name}": { plan: string; version: number };
}
