#!/usr/bin/env bash
# Builds the polyglot example operators (one component of world `operator-component`
# each, or `timed-operator-component` for those with timers) into OUT_DIR/<name>.wasm:
#   Rust   tag-rust parse        cargo build --target wasm32-wasip2 (weir-sdk-operator)
#   Python tag-python enrich window-python join-python
#                                componentize-py (sdk/python)
#   JS     tag-js filter window-js join-js
#                                componentize-js (sdk/js/weir.js)
#   C      tag-c count parse-events window-c first-seen parse-sides join-c
#                                wit-bindgen c + clang (wasm32-wasi) + jco new --wasi-reactor
#
# Usage: build.sh OUT_DIR [NAME...]     (all when no NAME is given)
#
# A component is rebuilt only when it is older than its sources, its language's SDK or
# wit/. Tools: on PATH, or
#   WEIR_TOOLS_DIR   tools cache of .ci/install-toolchains (default ~/.cache/weir-tools)
#   WEIR_JS_TOOLS    directory holding node_modules with componentize-js and jco
#                    (default $WEIR_TOOLS_DIR/js)
#   WEIR_WASI_SYSROOT  wasi-libc sysroot for clang (default /usr: Debian's wasi-libc)
#   CARGO_TARGET_DIR   cargo's target dir (default <repo>/target)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [NAME...]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
shift
wit="$root/wit"
tools_dir=${WEIR_TOOLS_DIR:-$HOME/.cache/weir-tools}
js_tools=${WEIR_JS_TOOLS:-$tools_dir/js}
sysroot=${WEIR_WASI_SYSROOT:-/usr}
export PATH="$PATH:$tools_dir/bin:$HOME/.cargo/bin:$HOME/.local/bin"
stage="$out/.build"
mkdir -p "$stage"

rust=(tag-rust parse)
python=(tag-python enrich window-python join-python)
js=(tag-js filter window-js join-js)
c=(tag-c count parse-events window-c first-seen parse-sides join-c)
# Operators with timers: world timed-operator-component (exports timers.on-timer too).
timed=(window-python window-js window-c first-seen join-python join-js join-c)
all=("${rust[@]}" "${python[@]}" "${js[@]}" "${c[@]}")
want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${all[@]}")

die() { echo "build.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (PATH, $tools_dir/bin); run .ci/install-toolchains"; }
js_tool() {
    local t="$js_tools/node_modules/.bin/$1"
    [ -x "$t" ] || die "$1 not found in $js_tools/node_modules (set WEIR_JS_TOOLS or run .ci/install-toolchains)"
    echo "$t"
}

# fresh OUT SRC...: OUT exists and no file under SRC is newer.
fresh() {
    local o=$1
    shift
    [ -f "$o" ] || return 1
    [ -z "$(find "$@" -type f -newer "$o" -not -path '*/__pycache__/*' -print -quit)" ]
}

# run NAME TOOL ARGS...: runs a build step quietly; on failure prints its output.
run() {
    local name=$1 log="$stage/$1.log"
    shift
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        die "building $name failed: $*"
    fi
}

now() { date +%s%N; }
report() {
    local name=$1 t0=$2 ms
    ms=$((($(now) - t0) / 1000000))
    printf '%-11s %9s bytes  %3d.%01ds\n' "$name" "$(stat -c %s "$out/$name.wasm")" $((ms / 1000)) $((ms % 1000 / 100))
}

build_rust() {
    local names=("$@") pkgs=() n
    [ ${#names[@]} -gt 0 ] || return 0
    need cargo
    for n in "${names[@]}"; do pkgs+=(-p "$n"); done
    local t0
    t0=$(now)
    local target=${CARGO_TARGET_DIR:-$root/target}
    run "${names[*]}" cargo build --release --target wasm32-wasip2 --manifest-path "$root/examples-wasm/Cargo.toml" --target-dir "$target" "${pkgs[@]}"
    for n in "${names[@]}"; do
        local built="$target/wasm32-wasip2/release/${n//-/_}.wasm"
        if ! cmp -s "$built" "$out/$n.wasm"; then
            cp "$built" "$out/$n.wasm.tmp" && mv "$out/$n.wasm.tmp" "$out/$n.wasm"
        fi
        report "$n" "$t0"
    done
}

# world NAME: the WIT world the component implements.
world() {
    if has "$1" "${timed[@]}"; then echo timed-operator-component; else echo operator-component; fi
}

build_python() {
    local n=$1 src="$here/$1"
    if fresh "$out/$n.wasm" "$src" "$root/sdk/python" "$wit"; then echo "$n: up to date"; return; fi
    need componentize-py
    local t0
    t0=$(now)
    PYTHONDONTWRITEBYTECODE=1 run "$n" componentize-py -d "$wit" -w "$(world "$n")" componentize app \
        -p "$src" -p "$root/sdk/python" -o "$out/$n.wasm.tmp"
    mv "$out/$n.wasm.tmp" "$out/$n.wasm"
    report "$n" "$t0"
}

build_js() {
    local n=$1 src="$here/$1"
    if fresh "$out/$n.wasm" "$src" "$root/sdk/js" "$wit"; then echo "$n: up to date"; return; fi
    local cjs
    cjs=$(js_tool componentize-js)
    local t0
    t0=$(now)
    rm -rf "$stage/$n" && mkdir -p "$stage/$n"
    cp "$src"/*.js "$root/sdk/js/weir.js" "$stage/$n/"
    # -d http fetch-event: no wasi:http import (the host grants none).
    (cd "$stage/$n" && run "$n" "$cjs" app.js --wit "$wit" --world-name "$(world "$n")" \
        -d http fetch-event -o "$out/$n.wasm.tmp")
    mv "$out/$n.wasm.tmp" "$out/$n.wasm"
    report "$n" "$t0"
}

build_c() {
    local n=$1 src="$here/$1"
    if fresh "$out/$n.wasm" "$src" "$root/sdk/c" "$wit"; then echo "$n: up to date"; return; fi
    need wit-bindgen
    need clang
    local jco
    jco=$(js_tool jco)
    local t0
    t0=$(now)
    local b="$stage/$n"
    rm -rf "$b" && mkdir -p "$b"
    local w gen defs=()
    w=$(world "$n")
    gen=${w//-/_}
    [ "$w" = operator-component ] || defs=(-DWEIR_TIMERS)
    run "$n" wit-bindgen c "$wit" --world "$w" --out-dir "$b/gen"
    run "$n" clang --target=wasm32-wasi --sysroot="$sysroot" -O3 -mbulk-memory -flto -mexec-model=reactor -Wall -Wextra -Wno-unused-parameter \
        "${defs[@]}" -I "$b/gen" -I "$root/sdk/c" -o "$b/core.wasm" "$src"/*.c "$root/sdk/c/weir.c" \
        "$b/gen/$gen.c" "$b/gen/${gen}_component_type.o" -Wl,--strip-debug
    run "$n" "$jco" new "$b/core.wasm" --wasi-reactor -o "$out/$n.wasm.tmp"
    mv "$out/$n.wasm.tmp" "$out/$n.wasm"
    report "$n" "$t0"
}

has() {
    local x=$1
    shift
    for e in "$@"; do [ "$e" = "$x" ] && return 0; done
    return 1
}
for n in "${want[@]}"; do has "$n" "${all[@]}" || die "unknown example $n (known: ${all[*]})"; done

sel=()
for n in "${rust[@]}"; do has "$n" "${want[@]}" && sel+=("$n"); done
build_rust "${sel[@]}"
for n in "${python[@]}"; do has "$n" "${want[@]}" && build_python "$n"; done
for n in "${js[@]}"; do has "$n" "${want[@]}" && build_js "$n"; done
for n in "${c[@]}"; do has "$n" "${want[@]}" && build_c "$n"; done
echo "built into $out"
