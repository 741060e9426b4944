#!/usr/bin/env bash
# Builds {{module}}.wasm from app.js with ComponentizeJS, installed into node_modules on
# first use. Needs Node.js 20 or later and npm.
set -euo pipefail
cd "$(dirname "$0")"

command -v node >/dev/null && command -v npm >/dev/null || {
    echo "build.sh needs Node.js 20 or later and npm" >&2
    exit 1
}
if (($(node -p 'process.versions.node.split(".")[0]') < 20)); then
    echo "build.sh needs Node.js 20 or later (ComponentizeJS's dependencies do); this is $(node --version)" >&2
    exit 1
fi
if [[ ! -x node_modules/.bin/componentize-js || package.json -nt node_modules/.package-lock.json ]]; then
    echo "==> installing ComponentizeJS into node_modules" >&2
    npm install --no-fund --no-audit --loglevel=error
fi

# --wit/--world-name: the WIT and its world. --disable http fetch-event: no fetch() (coda does
# not link wasi:http; an applet reaches the network through coda's http import, under its
# grants).
node_modules/.bin/componentize-js app.js --wit wit --world-name this-applet \
    --disable http fetch-event -o {{module}}.wasm
echo "built {{module}}.wasm ($(wc -c <{{module}}.wasm) bytes)" >&2
