// The loopback HTTP server both benchmarked flows call in their fourth step (coda's
// data-connector POSTs /calls/{interaction}, Restate's service POSTs /notify). It counts calls
// and distinct Idempotency-Key values, and answers a repeated key with the stored answer, as
// an idempotent receiver would: a duplicate call or a missing key shows in its counts.
//   POST (any path)  -> {"ok": true, "seq": N}
//   GET  /stats      -> {requests, distinctKeys, duplicates, missingKey}
//   POST /reset      -> clears the counts
// Env: LOOPBACK_PORT (default 8026).
import http from "node:http";

const PORT = parseInt(process.env.LOOPBACK_PORT ?? "8026");
let requests = 0;
let duplicates = 0;
let missingKey = 0;
let seen = new Map();

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ requests, distinctKeys: seen.size, duplicates, missingKey }));
    return;
  }
  if (req.method === "POST" && req.url === "/reset") {
    requests = 0;
    duplicates = 0;
    missingKey = 0;
    seen = new Map();
    res.writeHead(200, { "content-type": "application/json" });
    res.end("{}");
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(404);
    res.end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    requests++;
    try {
      JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      res.writeHead(400);
      res.end();
      return;
    }
    const key = req.headers["idempotency-key"];
    let body;
    if (!key) {
      missingKey++;
      body = JSON.stringify({ ok: true, seq: -1 });
    } else if (seen.has(key)) {
      duplicates++;
      body = seen.get(key);
    } else {
      body = JSON.stringify({ ok: true, seq: seen.size + 1 });
      seen.set(key, body);
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(PORT, "127.0.0.1", () => console.log(`loopback on 127.0.0.1:${PORT} (pid ${process.pid})`));
