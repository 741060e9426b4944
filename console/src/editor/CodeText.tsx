// A textarea with line numbers: enough to write a plan in (and to find the line a problem
// names), at a fraction of a code editor's weight. The numbers are a gutter that scrolls
// with the text; lines with a problem are marked in it.
import type { RefObject } from "preact";
import { useRef } from "preact/hooks";

export function CodeText(props: {
  id: string;
  label: string;
  value: string;
  onInput: (text: string) => void;
  textarea: RefObject<HTMLTextAreaElement | null>;
  problemLines: Set<number>;
  describedBy?: string;
}) {
  const gutter = useRef<HTMLPreElement>(null);
  const escaped = useRef(false);
  const count = props.value.split("\n").length;
  const numbers = [];
  for (let i = 1; i <= count; i++) {
    numbers.push(
      <span key={i} class={props.problemLines.has(i) ? "bad-line" : undefined}>
        {i}
        {"\n"}
      </span>,
    );
  }
  return (
    <div class="code-text">
      <label for={props.id} class="code-label">{props.label}</label>
      <div class="code-box">
        <pre class="gutter" ref={gutter} aria-hidden="true">{numbers}</pre>
        <textarea
          id={props.id}
          ref={props.textarea}
          value={props.value}
          spellcheck={false}
          autocomplete="off"
          autocapitalize="off"
          wrap="off"
          aria-describedby={props.describedBy}
          onInput={(e) => props.onInput((e.target as HTMLTextAreaElement).value)}
          onScroll={(e) => {
            if (gutter.current) gutter.current.scrollTop = (e.target as HTMLTextAreaElement).scrollTop;
          }}
          onKeyDown={(e) => {
            // Tab indents (two spaces, as YAML wants); Escape then Tab leaves the box, so
            // the keyboard is never trapped.
            if (e.key === "Tab" && !e.shiftKey && !escaped.current) {
              e.preventDefault();
              const t = e.target as HTMLTextAreaElement;
              const { selectionStart: s, selectionEnd: end } = t;
              t.setRangeText("  ", s, end, "end");
              props.onInput(t.value);
            }
            escaped.current = e.key === "Escape";
          }}
        />
      </div>
      <p class="muted hint">Tab indents; press Escape, then Tab, to move on.</p>
    </div>
  );
}

/// Puts the caret at the start of `line` (1-based) and scrolls it into view.
export function goToLine(textarea: HTMLTextAreaElement, line: number) {
  const lines = textarea.value.split("\n");
  let at = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) at += lines[i]!.length + 1;
  textarea.focus();
  textarea.setSelectionRange(at, at + (lines[line - 1]?.length ?? 0));
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
}
