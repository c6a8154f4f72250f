#!/usr/bin/env bash
# Schemathesis (pinned in tests/python/requirements.txt) against a running Outbound and its own
# OpenAPI document (GET /api/v1.0/openapi.json, contract §0.3): every check ("all"), every phase
# (examples, coverage, fuzzing, stateful), a bounded number of examples per operation and a fixed
# seed. Exits non-zero on any finding. Only the server at OUTBOUND_URL is contacted.
#
# Environment:
#   OUTBOUND_URL                         the server, e.g. http://127.0.0.1:8080 (required)
#   OUTBOUND_API_KEY                     an API key of an organization (required)
#   OUTBOUND_PYTOOLS                     the venv of tests/python/setup.sh (default target/pytools)
#   OUTBOUND_SCHEMATHESIS_MAX_EXAMPLES   test cases per operation and phase (default 30)
#   OUTBOUND_SCHEMATHESIS_SEED           the seed (default 1205; another one explores other inputs)
#   OUTBOUND_SCHEMATHESIS_PHASES         default examples,coverage,fuzzing,stateful
#   OUTBOUND_SCHEMATHESIS_WORKERS        concurrent workers (default 1: with threads, Hypothesis on
#                                        Python 3.11 sometimes fails in `ast` — "AST constructor
#                                        recursion depth mismatch" — an error of the tool, not a finding)
#   OUTBOUND_SCHEMATHESIS_REPORT         a directory: also write a JUnit and an NDJSON report there
# Extra arguments are passed to `schemathesis run` (e.g. --include-path-regex '/campaigns$').
#
# The server must allow the request rate: start it with --rate-limit-rps 100000 (or 0, no limit).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
: "${OUTBOUND_URL:?set OUTBOUND_URL to the server, e.g. http://127.0.0.1:8080}"
: "${OUTBOUND_API_KEY:?set OUTBOUND_API_KEY to an API key of the server}"
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "schemathesis.sh: no Schemathesis in $venv: run \`bash tests/python/setup.sh\` first" >&2
    exit 2
fi

base="${OUTBOUND_URL%/}"
base="${base%/api/v1.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The document, fetched once (with the key, should the server ask for one).
"$venv/bin/python" - "$base/api/v1.0/openapi.json" "$OUTBOUND_API_KEY" "$work/openapi.json" <<'EOF'
import sys, httpx
url, key, out = sys.argv[1:]
response = httpx.get(url, headers={"Authorization": f"api-key {key}"}, timeout=30)
if response.status_code != 200:
    sys.exit(f"GET {url} answered {response.status_code}: {response.text[:500]}")
open(out, "wb").write(response.content)
EOF

# Paths in Outbound's document are absolute (/api/v1.0/…) or relative to a server entry; the
# document's own `servers` decides, so the base URL is the origin plus whatever it says.
api_base="$("$venv/bin/python" - "$work/openapi.json" "$base" <<'EOF'
import json, sys
from urllib.parse import urlparse
document, origin = json.load(open(sys.argv[1])), sys.argv[2]
servers = document.get("servers") or [{"url": ""}]
path = urlparse(servers[0].get("url", "")).path.rstrip("/")
print(origin + path)
EOF
)"

report=()
if [ -n "${OUTBOUND_SCHEMATHESIS_REPORT:-}" ]; then
    mkdir -p "$OUTBOUND_SCHEMATHESIS_REPORT"
    report=(--report junit,ndjson --report-dir "$OUTBOUND_SCHEMATHESIS_REPORT")
fi

echo "Schemathesis $("$venv/bin/python" -c 'import schemathesis; print(schemathesis.__version__)') against $api_base" \
    "(max examples ${OUTBOUND_SCHEMATHESIS_MAX_EXAMPLES:-30}, seed ${OUTBOUND_SCHEMATHESIS_SEED:-1205})"
cd "$work"
export SCHEMATHESIS_HOOKS="$here/schemathesis_hooks.py"
# The key goes through the document's security scheme, not a fixed header: the checks that send a
# request without it (missing_required_header, ignored_auth) must be able to leave it out.
cat > "$work/schemathesis.toml" <<EOF
[auth.openapi.api_key]
api_key = "api-key $OUTBOUND_API_KEY"
EOF
exec "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$work/openapi.json" \
    --url "$api_base" \
    --checks all \
    --phases "${OUTBOUND_SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}" \
    --max-examples "${OUTBOUND_SCHEMATHESIS_MAX_EXAMPLES:-30}" \
    --seed "${OUTBOUND_SCHEMATHESIS_SEED:-1205}" \
    --workers "${OUTBOUND_SCHEMATHESIS_WORKERS:-1}" \
    --generation-database none \
    --request-timeout 30 \
    --no-color \
    "${report[@]}" \
    "$@"
