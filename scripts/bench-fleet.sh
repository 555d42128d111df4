#!/usr/bin/env bash
# A fleet on one machine, measured as a user measures a server: see scripts/bench-fleet.py
# (what each round runs, what is measured, the environment it reads).
exec python3 "$(dirname "$0")/bench-fleet.py" "$@"
