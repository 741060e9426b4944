// Every change to an interaction's details, oldest first: field, before, after, who, when.
import type { AuditEntry } from "../../api/model";
import { Time } from "../../time";

function shown(v: unknown): string {
  if (v === null || v === undefined) return "—";
  return typeof v === "string" ? v : JSON.stringify(v);
}

export function AuditTrail({ entries }: { entries: AuditEntry[] }) {
  if (entries.length === 0) return <p class="muted">No changes since it completed.</p>;
  return (
    <table class="list" aria-label="Audit history">
      <thead>
        <tr>
          <th scope="col">#</th>
          <th scope="col">Field</th>
          <th scope="col">Before</th>
          <th scope="col">After</th>
          <th scope="col">By</th>
          <th scope="col">When</th>
        </tr>
      </thead>
      <tbody>
        {entries.map((e) => (
          <tr key={e.seq}>
            <td data-label="#">{e.seq}</td>
            <td data-label="Field"><code>{e.field}</code></td>
            <td data-label="Before">{shown(e.before)}</td>
            <td data-label="After">{shown(e.after)}</td>
            <td data-label="By" class="mono">{e.by}</td>
            <td data-label="When"><Time ms={e.at_ms} /></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
