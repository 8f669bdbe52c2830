#!/usr/bin/env bash
# cargo deny with deny.toml. Installs a pinned cargo-deny into $MOVREK_CACHE/cargo-tools (outside
# the clone; a cold install compiles it from crates.io: about 10 minutes on 2 shared cores).
# Licenses, bans and sources always; advisories (and yanked crates) only when the RustSec
# database can be cloned: cargo-deny fetches it from GitHub, which some machines cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
version=0.20.2
root="$MOVREK_CACHE/cargo-tools"
deny="$root/bin/cargo-deny"
if ! { [[ -x $deny ]] && [[ $("$deny" --version) == "cargo-deny $version" ]]; }; then
    echo "installing cargo-deny $version into $root"
    cargo install --locked --quiet cargo-deny --version "$version" --root "$root"
fi
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
    "$deny" check --hide-inclusion-graph
else
    echo "cargo deny: the RustSec advisory database (a GitHub clone) cannot be fetched here;" \
        "checking licenses, bans and sources only"
    "$deny" check --hide-inclusion-graph licenses bans sources
fi
