#!/usr/bin/env bash
# Builds {{name}}.wasm: bindings generated from Weir's WIT by `wit-bindgen c` (0.63),
# compiled with clang for wasm32-wasi (Debian: clang lld wasi-libc
# libclang-rt-dev-wasm32), made a component with `jco new --wasi-reactor`.
# WEIR_SDK: Weir's sdk/ directory; WEIR_WIT: its wit/ directory; WEIR_JS_TOOLS: a
# directory with node_modules holding jco; WEIR_WASI_SYSROOT: wasi-libc (default /usr).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk=${WEIR_SDK:-{{sdk}}}
wit=${WEIR_WIT:-$sdk/../wit}
tools=${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}
js_tools=${WEIR_JS_TOOLS:-$tools/js}
export PATH="$PATH:$tools/bin:$HOME/.cargo/bin"
jco="$js_tools/node_modules/.bin/jco"
command -v jco >/dev/null 2>&1 && [ ! -x "$jco" ] && jco=jco
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
wit-bindgen c "$wit" --world operator-component --out-dir "$build/gen" >/dev/null
clang --target=wasm32-wasi --sysroot="${WEIR_WASI_SYSROOT:-/usr}" -O3 -mbulk-memory -flto -mexec-model=reactor -Wall -Wextra \
    -Wno-unused-parameter -I "$build/gen" -I "$sdk/c" -o "$build/core.wasm" ./*.c "$sdk/c/weir.c" \
    "$build/gen/operator_component.c" "$build/gen/operator_component_component_type.o" -Wl,--strip-debug
"$jco" new "$build/core.wasm" --wasi-reactor -o "{{name}}.wasm"
echo "built {{name}}.wasm"
