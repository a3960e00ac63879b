#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (pip install componentize-py==0.25.1).
# WEIR_SDK: Weir's sdk/ directory; WEIR_WIT: its wit/ directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
sdk=${WEIR_SDK:-{{sdk}}}
wit=${WEIR_WIT:-$sdk/../wit}
export PATH="$PATH:$HOME/.local/bin"
componentize-py -d "$wit" -w operator-component componentize app -p . -p "$sdk/python" -o "{{name}}.wasm"
