// Writes a Brotli (.br) and a gzip (.gz) copy beside every text file of the build, which
// coda sends as they are to a client that accepts them (host/server/src/console.rs).
// Deterministic (gzip's header carries no time), so a rebuild of the same sources gives
// the same bytes and `./dev test` can compare it with what is committed.
import { readdirSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, gzipSync, constants } from "node:zlib";

const dir = process.env.CONSOLE_OUT_DIR ?? "dist";
const compressible = /\.(html|js|css|svg|json)$/;

function walk(path) {
  for (const name of readdirSync(path).sort()) {
    const full = join(path, name);
    if (statSync(full).isDirectory()) walk(full);
    else if (compressible.test(name)) {
      const bytes = readFileSync(full);
      writeFileSync(
        `${full}.br`,
        brotliCompressSync(bytes, {
          params: {
            [constants.BROTLI_PARAM_QUALITY]: 11,
            [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
          },
        }),
      );
      writeFileSync(`${full}.gz`, gzipSync(bytes, { level: 9 }));
    }
  }
}
walk(dir);
