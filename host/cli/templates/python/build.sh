#!/usr/bin/env bash
# Builds {{module}}.wasm from app.py with componentize-py, installed into .venv on first use.
set -euo pipefail
cd "$(dirname "$0")"

if ! cmp -s requirements.txt .venv/requirements.txt; then
    python3 -c 'import venv, ensurepip' 2>/dev/null || {
        echo "build.sh needs Python 3 with its venv module (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    echo "==> installing componentize-py into .venv" >&2
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt .venv/requirements.txt
fi

# -d/-w: the WIT and its world; -p: where the app's modules are (add a directory per
# dependency you vendor); app: the module holding the Handler class.
.venv/bin/componentize-py --quiet -d wit -w this-applet componentize -p . app -o {{module}}.wasm
echo "built {{module}}.wasm ($(wc -c <{{module}}.wasm) bytes)" >&2
