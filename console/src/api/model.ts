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
  // The step's idempotency key (what the applet was given; data-connector sends it) and
  // the key the host gives the call itself when the request sets none, as the API gives them.
  step_key: string;
  call_key: string;
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

// Interactions (host/server/src/interactions.rs `interaction_json`).
export interface Customer {
  name: string | null;
  phone: string | null;
  email: string | null;
}

export interface InteractionDetails {
  subject: string | null;
  type: string | null;
  result: string | null;
  notes: string | null;
  customer: Customer;
  custom_fields: Record<string, unknown>;
}

export interface PostFlowAction {
  target: string;
  action: string;
  plan: string;
  invocation_data: unknown;
}

export interface Interaction {
  id: string;
  channel: string;
  plan: string | null;
  status: "active" | "completed";
  present: unknown[];
  agent_reached: boolean;
  data: Record<string, unknown>;
  post_flow: PostFlowAction | null;
  post_flow_fired: boolean;
  updated_at_ms: number;
  skill: string | null;
  agent: string | null;
  completed_by: string | null;
  completed_at_ms: number | null;
  details: InteractionDetails | null;
  follow_up: unknown;
  post_contact: unknown;
  disposition: unknown;
}

export interface AuditEntry {
  seq: number;
  field: string;
  before: unknown;
  after: unknown;
  by: string;
  at_ms: number;
}

// Applets (host/server/src/applets.rs `by_name`, `builtin_json`, `uploaded_json`).
export interface AppletVersionEntry {
  version: string;
  origin: string;
  retired: boolean;
  digest?: string;
  uploaded_at_ms?: number;
}

export interface AppletEntry {
  name: string;
  origins: string[];
  versions: AppletVersionEntry[];
}

export interface AppletPackage {
  vendor: string;
  signed_by: string;
  manifest: unknown;
}

export interface AppletDescription extends AppletVersion {
  capabilities?: string[];
  coda_imports?: string[];
  config_schema?: unknown;
  needs_live_party?: boolean;
  digest?: string;
  size?: number;
  uploaded_at_ms?: number;
  retired_at_ms?: number | null;
  vendor?: string | null;
  package?: AppletPackage | null;
}

// Grants and the operator's ceiling as the tenant sees it (host/capabilities settings.rs).
export interface Grant {
  http: string[];
  email: boolean;
  sql: string[];
  secrets: string[];
  interactions: boolean;
  kv?: string[];
}

// What each GET answers, by path.
export interface GetAnswers {
  "/v1/plans": { plans: PlanSummary[] };
  "/v1/plans/{name}": PlanVersion;
  "/v1/plans/{name}/versions": PlanVersions;
  "/v1/plans/{name}/versions/{version}": PlanVersion;
  "/v1/plans/{name}/diff": PlanDiff;
  "/v1/applets/{name}/versions/{version}": AppletDescription;
  "/v1/runs": RunPage;
  "/v1/runs/{id}": RunDetail;
  "/v1/operator/tenants/{tenant}/ceiling": CeilingView;
  "/v1/usage": Usage;
  "/v1/interactions": InteractionPage;
  "/v1/interactions/{id}": Interaction;
  "/v1/interactions/{id}/audit": { interaction: string; audit: AuditEntry[] };
  "/v1/applets": { applets: AppletEntry[] };
  "/v1/applets/{name}": AppletEntry;
  "/v1/ceiling": CeilingView;
  "/v1/grants": { grants: { applet: string; grant: Grant; updated_at_ms: number }[] };
  "/v1/secrets": { secrets: (string | { name: string })[] };
}

export interface PostAnswers {
  "/v1/plans/validate": { valid: true; plan: string; type: string };
  "/v1/operator/tenants": NewTenant;
  "/v1/operator/tenants/{tenant}/tokens": NewToken;
  "/v1/interactions/{id}/clone": Interaction;
  "/v1/interactions/{id}/disposition": { interaction: string; disposition: unknown; woken: string[] };
  "/v1/applets": AppletDescription;
}

export interface PutAnswers {
  "/v1/operator/tenants/{tenant}/ceiling": CeilingView;
  "/v1/grants/{applet}": { applet: string; grant: Grant };
  "/v1/plans/{name}": { plan: string; version: number };
}

// The operator's API (host/server/src/tenants.rs, grants.rs). A token's secret is in the
// answer that issues it and nowhere else, ever again.
export interface NewToken {
  tenant: string;
  token: string;
  token_id: string;
}

// The ceiling's fields (coda_capabilities::settings::Ceiling). `kv` is there when this coda
// has the key-value store; the GET answers every field, the PUT takes what is given.
export interface Ceiling {
  http_hosts: string[];
  allow_private: string[];
  email: boolean;
  max_recipients: number;
  databases: string[];
  secrets: string[];
  interactions: boolean;
  email_per_hour: number | null;
  max_secrets: number | null;
  fuel: number | null;
  memory_bytes: number | null;
  upload_bytes: number | null;
  concurrency: number | null;
  kv?: Record<string, unknown> | null;
}

// GET /v1/operator/tenants/{tenant}/ceiling: the ceiling as the tenant may see it (no SMTP
// credentials, database URLs redacted).
export interface CeilingView {
  tenant: string;
  set: boolean;
  ceiling: Ceiling;
  smtp: (Record<string, unknown> & { authenticated?: boolean }) | null;
  databases: Record<string, string>;
}

// GET /v1/interactions (interactions.rs `InteractionEntry`): a page, `next` the `after` of
// the following one.
export interface InteractionEntry {
  id: string;
  status: string;
  channel: string;
  skill: string | null;
  agent: string | null;
  plan: string | null;
  created_at_ms: number;
  updated_at_ms: number;
  completed_at_ms: number | null;
  parties: number;
  runs: number;
  edits: number;
  disposition: string | null;
  follow_up_of: string | null;
}

export interface InteractionPage {
  interactions: InteractionEntry[];
  next: string | null;
}

// The counts of a window or of one bucket of it (usage.rs `UsageCounts`).
export interface UsageCounts {
  invocations: number;
  fuel_used: number;
  invocation_ms: number;
  emails_sent: number;
  email_calls: number;
  http_calls: number;
  sql_calls: number;
  follow_ups: number;
  kv_calls?: number;
}

// GET /v1/usage: totals for one window [since, until), and with `bucket` its series.
export interface Usage extends UsageCounts {
  tenant: string;
  since: string;
  until: string;
  buckets?: (UsageCounts & { since: string; until: string })[];
  invocations: number;
  fuel_used: number;
  invocation_ms: number;
  emails_sent: number;
  email_calls: number;
  http_calls: number;
  sql_calls: number;
  follow_ups: number;
  kv_calls?: number;
  effects: Record<string, unknown>;
}

export interface PatchAnswers {
  "/v1/interactions/{id}": Interaction;
}

// The operator's lists (host/server/src/tenants.rs), typed by the document itself; these
// merge into the answer maps above.
import type { components } from "./schema";
export type TenantEntry = components["schemas"]["TenantEntry"];
export type TokenEntry = components["schemas"]["TokenEntry"];
export interface GetAnswers {
  "/v1/operator/tenants": components["schemas"]["TenantPage"];
  "/v1/operator/tenants/{tenant}/tokens": components["schemas"]["TokenPage"];
}
