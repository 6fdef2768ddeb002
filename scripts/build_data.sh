#!/usr/bin/env bash
# Builds the default dataset data/fortunes_{train,val}.bin from the Debian fortunes package with
# perigee-data. Usage: scripts/build_data.sh [path/to/perigee-data]  (default build/tools/perigee-data)
# Skips the work when both files exist and are newer than the tool. See docs/data.md.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

tool="${1:-build/tools/perigee-data}"
out=data/fortunes
train="${out}_train.bin"
val="${out}_val.bin"

if [[ ! -x "$tool" ]]; then
  echo "build_data.sh: $tool not found or not executable; build it first:" >&2
  echo "  cmake -S . -B build && cmake --build build --target perigee-data" >&2
  exit 1
fi
if [[ ! -d /usr/share/games/fortunes ]]; then
  echo "build_data.sh: the fortunes package is not installed; install it with: apt-get install fortunes" >&2
  exit 1
fi

if [[ -f "$train" && -f "$val" && "$train" -nt "$tool" && "$val" -nt "$tool" ]]; then
  echo "build_data.sh: $train and $val are up to date"
  exit 0
fi

"$tool" --fortunes --out "$out"
