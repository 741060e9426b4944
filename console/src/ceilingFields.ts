// The ceiling's fields as the editor shows them (coda_capabilities::settings::Ceiling), how
// a field's text becomes JSON, and which field a refusal names. The server decides what is
// valid: the form sends what was typed (a number that is not one goes as text) so the
// refusal is the server's own, shown beside the field it names.
import type { Ceiling } from "./api/model";

export type FieldKind = "list" | "bool" | "int" | "optional-int";

export interface Field {
  key: keyof Ceiling;
  label: string;
  kind: FieldKind;
  help: string;
}

export const CEILING_FIELDS: Field[] = [
  { key: "http_hosts", label: "HTTP hosts", kind: "list", help: "Host patterns the tenant's applets may call, one a line (api.example.com, *.example.com)." },
  { key: "allow_private", label: "Private address ranges", kind: "list", help: "Ranges otherwise refused that HTTP calls may reach, one a line (10.20.0.0/16)." },
  { key: "email", label: "Email", kind: "bool", help: "The tenant may send email (through the SMTP server below)." },
  { key: "max_recipients", label: "Recipients per message", kind: "int", help: "At most this many recipients in one message." },
  { key: "email_per_hour", label: "Emails per hour", kind: "optional-int", help: "Messages per rolling hour; empty: no limit beyond Email." },
  { key: "databases", label: "Databases", kind: "list", help: "Names of the databases below the tenant may query, one a line." },
  { key: "interactions", label: "Follow-ups", kind: "bool", help: "The tenant may schedule follow-up interactions." },
  { key: "max_secrets", label: "Secrets", kind: "optional-int", help: "How many secrets the tenant may store; empty: none." },
  { key: "fuel", label: "Fuel per invocation", kind: "optional-int", help: "At most the runtime's default; empty: the default." },
  { key: "memory_bytes", label: "Memory per invocation (bytes)", kind: "optional-int", help: "Empty: the runtime's default." },
  { key: "upload_bytes", label: "Largest applet upload (bytes)", kind: "optional-int", help: "Empty: the runtime's default." },
  { key: "concurrency", label: "Runs stepping at once", kind: "optional-int", help: "Empty: the runtime's default." },
];

/// A field's value as the form's text (a list one a line, a number in digits).
export function toText(field: Field, value: unknown): string | boolean {
  if (field.kind === "bool") return value === true;
  if (field.kind === "list") return Array.isArray(value) ? value.join("\n") : "";
  return value === null || value === undefined ? "" : String(value);
}

/// The form's text as the ceiling's JSON value.
export function fromText(field: Field, text: string | boolean): unknown {
  if (field.kind === "bool") return text === true;
  const s = String(text).trim();
  if (field.kind === "list") {
    return s.split("\n").map((l) => l.trim()).filter(Boolean);
  }
  if (s === "") return field.kind === "optional-int" ? null : s;
  // Digits (or a sign) are a number; anything else goes as typed, for the server to refuse.
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

/// The field a refusal (`at \`ceiling.fuel\`: …`) names, and the rest of its message: the
/// ceiling's own fields by their key, `smtp…` and `databases…` (the document's) as such.
export function refusedField(message: string): { field: string | null; message: string } {
  const m = /^at `([^`]*)`: ([\s\S]*)$/.exec(message);
  if (!m) return { field: null, message };
  const path = m[1]!;
  const head = path.split(/[.[]/)[0]!;
  if (head === "ceiling") {
    const key = path.slice("ceiling.".length).split(/[.[]/)[0] ?? "";
    return { field: key ? `ceiling.${key}` : null, message: m[2]! };
  }
  if (head === "smtp" || head === "databases") return { field: head, message: m[2]! };
  return { field: null, message };
}
