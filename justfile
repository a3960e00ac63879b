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

# Every guest SDK's tests (Rust, Python, JavaScript, C) against the host-written batch
# vectors in sdk/vectors. Needs python3, node and a C compiler (.ci/install-toolchains).
sdk-test:
    .ci/sdk-tests

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

# Build the polyglot example operators (Rust, Python, JavaScript, C; one component each)
# and their job manifests into target/polyglot. Toolchains: .ci/install-toolchains.
polyglot:
    examples-wasm/polyglot/build.sh target/polyglot
    cp examples-wasm/polyglot/*.toml target/polyglot/

# Call the polyglot components outside the host (jco transpile + node): the tag map in
# every language (bytes and records/s) and the 4-language pipeline over the sample.
polyglot-check: polyglot
    node examples-wasm/polyglot/check.mjs target/polyglot

# Chaos checker (tests/chaos): word-count jobs on a real cluster under seeded faults
# (TaskManager kills, pauses past the heartbeat timeout, JobManager failover, network
# partitions, damaged checkpoints), committed output checked exactly once. Partitions
# need root (a network namespace per TaskManager); without, it runs on loopback.
# Extra arguments pass through: `just chaos --seed 7`, `just chaos --seed 7 --only-job 3`.
# The full run: 20 jobs, at least 200 faults (about 25 minutes on 2 cores).
chaos *args: chaos-build
    target/release/weir-chaos --jobs 20 --faults-per-job 10 --min-faults 200 {{args}}

# The chaos checker's preset for CI: 2 jobs, 3 faults each, about a minute.
chaos-smoke *args: chaos-build
    target/release/weir-chaos --smoke {{args}}

# What the chaos checker runs: the weir binary, the example jobs, the checker itself.
chaos-build: examples
    cargo build --release -p weir -p weir-chaos

# Soak run: 500 short checkpointed jobs and 100 uploads on a JobManager and 2
# TaskManagers with small caps; prints RSS, open descriptors and bytes on disk every
# 50 jobs and checks the bounded ones stay flat (an ignored test; about 10 minutes).
soak: examples
    cargo test --release --test all -- --ignored --nocapture soak
