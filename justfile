# Everyday recipes. `just --list` shows them.

# Build the example jobs (Wasm components) into target/wasm32-wasip2/release.
examples:
    cargo build --release --target wasm32-wasip2 --manifest-path examples-wasm/Cargo.toml --target-dir target

# Run word count over README.md on the embedded cluster.
demo: examples
    cargo run --release -- run target/wasm32-wasip2/release/wordcount.wasm --input README.md

# All tests (the README's test command).
test:
    rustup target add wasm32-wasip2 && cargo test --release --workspace

# Throughput and peak-RSS benchmark (WEIR_BENCH_N records, default 20M).
bench:
    cargo bench --bench throughput

# Data-plane throughput between two processes (own target dir: `-p` changes features).
bench-net:
    CARGO_TARGET_DIR=target/net cargo bench -p weir-net --bench dataplane

# Print a job's graph.
inspect job="target/wasm32-wasip2/release/wordcount.wasm":
    cargo run --release -- inspect {{job}}

lint:
    cargo fmt --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# Checkpoint costs: full and delta checkpoints and restore of 1M keys (library level),
# keyed-sum with and without checkpoints, and recovery time after a SIGKILLed TaskManager.
bench-checkpoint:
    cargo bench --bench checkpoint
    WEIR_BENCH_ONLY=checkpoints,recovery cargo bench --bench throughput
