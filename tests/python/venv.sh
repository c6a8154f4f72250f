# Sourced by setup.sh and schemathesis.sh: where this folder, the repository and the venv are
# ($OUTBOUND_PYTOOLS, default target/pytools, relative to the repository).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${OUTBOUND_PYTOOLS:-target/pytools}"
case "$venv" in
    /*) ;;
    *) venv="$repo/$venv" ;;
esac
