#!/usr/bin/env bash
# Soak (Benchmarks/soak/soak.py): builds release binaries, then 10 minutes of
# mixed load with failures injected, RSS and fds sampled every 10 s.
#   bash Benchmarks/soak/run.sh [--minutes N] [--warmup S]
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product herd-control >/dev/null
swift build -c release --product herd-proxy >/dev/null
swift build -c release --product herd-node >/dev/null
swift build -c release --product herd-fake-backend >/dev/null
exec python3 Benchmarks/soak/soak.py "$(swift build -c release --show-bin-path)" "$@"
