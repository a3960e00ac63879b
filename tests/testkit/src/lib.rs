//! Test support for Weir's end-to-end tests (`tests/all`) and benchmarks
//! (`tests/bench`):
//!
//! - [`weir`]: the `weir` binary under test ([`Weir`]), the repository root, process
//!   output helpers.
//! - [`examples`]: the example components (`examples-wasm/`, the polyglot examples),
//!   built once per process.
//! - [`cluster`]: a JobManager and TaskManagers as real processes on loopback
//!   ([`TestCluster`]), killed when dropped.
//! - [`postgres`]: a real PostgreSQL server on a free port ([`Postgres`]).
//! - [`kafka`]: a real Kafka broker (tansu), in memory or durable (S3 in moto).
//! - [`http`] and [`browser`]: a tiny HTTP/1.1 client and a headless Chromium driven
//!   over the DevTools protocol, for the dashboard.
//!
//! Cargo tells only the root package's integration tests and benches where the `weir`
//! binary is (`CARGO_BIN_EXE_weir`, at their compile time), so each of them makes one
//! [`Weir`] and passes it in:
//!
//! ```ignore
//! const WEIR: Weir = Weir::new(env!("CARGO_BIN_EXE_weir"), env!("CARGO_TARGET_TMPDIR"));
//! ```

pub mod browser;
pub mod cluster;
pub mod examples;
pub mod http;
pub mod kafka;
pub mod postgres;
pub mod weir;

pub use cluster::{TestCluster, non_loopback_ip, wait_until};
pub use examples::splitmix64;
pub use postgres::Postgres;
pub use weir::{Weir, root, stderr};
