// A secret the API shows once (a new token): on the page with a copy button and a plain
// warning that it will not be shown again.
import { useState } from "preact/hooks";

export function ShownOnce({ label, secret, id }: { label: string; secret: string; id: string }) {
  const [copied, setCopied] = useState<"yes" | "no" | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("yes");
    } catch {
      // No clipboard (an insecure origin, a refused permission): the text can be selected.
      setCopied("no");
    }
  };
  return (
    <div class="notice shown-once" role="status">
      <p>
        {label} (id <code>{id}</code>). Copy it now: <strong>you will not see it again</strong>.
      </p>
      <p class="secret-row">
        <code class="secret" aria-label="The token">{secret}</code>{" "}
        <button type="button" class="secondary" onClick={copy}>
          Copy
        </button>{" "}
        <span aria-live="polite">
          {copied === "yes" ? "Copied." : copied === "no" ? "Could not copy: select the text instead." : ""}
        </span>
      </p>
    </div>
  );
}
