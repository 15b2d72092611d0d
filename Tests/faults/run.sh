#!/usr/bin/env bash
# The fault table (issue "running it for real"): builds nothing; runs
# Tests/faults/faults.py against the binaries of the current debug build.
# Loopback only; about a minute. Exit 1 if any request was lost or hung.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 Tests/faults/faults.py "${1:-$(swift build --show-bin-path)}" "${@:2}"
