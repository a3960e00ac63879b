#!/usr/bin/env bash
# Builds {{name}}.wasm (needs the wasm32-wasip2 target: rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
name="{{name}}"
cargo build --release --target wasm32-wasip2
target=${CARGO_TARGET_DIR:-target}
cp "$target/wasm32-wasip2/release/${name//-/_}.wasm" "$name.wasm"
echo "built $name.wasm"
