#!/usr/bin/env bash
# README's test command: installs what the tests need (once) and runs the whole suite.
#
#   ./test.sh                 # everything
#   ./test.sh --test demo     # arguments go to `cargo test`
#
# The installer (.ci/install) needs root for apt-get: run as root (CI) or as a user with sudo
# (it asks for the password only when something is missing). Rust itself comes from rustup.rs.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust first (https://rustup.rs: curl https://sh.rustup.rs -sSf | sh)" >&2
  exit 1
fi
bash .ci/install
exec cargo test "$@"
