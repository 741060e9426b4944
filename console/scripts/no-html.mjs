// The console shows everything a tenant or an applet controls as text. This refuses the
// ways around that in its sources: HTML from strings, and code from strings (which the
// Content-Security-Policy would block anyway).
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const forbidden =
  /\b(innerHTML|outerHTML|insertAdjacentHTML|dangerouslySetInnerHTML|document\.write|createContextualFragment|DOMParser|eval|Function)\s*[(=:]|new\s+Function\b|javascript:/;
const found = [];
function walk(dir) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (/\.(ts|tsx)$/.test(name) && !name.endsWith(".d.ts")) {
      readFileSync(path, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (forbidden.test(line)) found.push(`${path}:${i + 1}: ${line.trim()}`);
        });
    }
  }
}
walk("src");
if (found.length) {
  console.error(`HTML or code from strings is not allowed in the console:\n${found.join("\n")}`);
  process.exit(1);
}
