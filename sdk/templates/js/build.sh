#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js (npm: @bytecodealliance/componentize-js).
# WEIR_SDK: Weir's sdk/ directory; WEIR_WIT: its wit/ directory; WEIR_JS_TOOLS: a
# directory with node_modules holding componentize-js (default: the tools cache of
# Weir's .ci/install-toolchains).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
here=$(pwd)
sdk=${WEIR_SDK:-{{sdk}}}
wit=${WEIR_WIT:-$sdk/../wit}
js_tools=${WEIR_JS_TOOLS:-${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}/js}
cjs="$js_tools/node_modules/.bin/componentize-js"
command -v componentize-js >/dev/null 2>&1 && [ ! -x "$cjs" ] && cjs=componentize-js
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp ./*.js "$sdk/js/weir.js" "$stage/"
cd "$stage"
# -d http fetch-event: no wasi:http import.
"$cjs" app.js --wit "$wit" --world-name operator-component -d http fetch-event -o "$here/{{name}}.wasm"
echo "built {{name}}.wasm"
