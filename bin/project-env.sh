# Sourced by bin/refinery and bin/dvc: sets $project (this checkout) and $venv (the virtualenv
# to use: $REFINERY_VENV, else the nearest .venv at or above this checkout, since a DVC queue runs
# experiments in copies under .dvc/tmp/; empty when there is none).
project=$(cd "$(dirname "$0")/.." && pwd -P)
venv=${REFINERY_VENV:-}
if [ -z "$venv" ]; then
    dir=$project
    while :; do
        if [ -x "$dir/.venv/bin/python" ]; then venv=$dir/.venv; break; fi
        [ "$dir" = / ] && break
        dir=$(dirname "$dir")
    done
fi
