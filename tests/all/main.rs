//! End-to-end tests through the `weir` binary and the embedded cluster; their support
//! (clusters, example components, the browser) is the `weir-testkit` crate.

use weir_testkit::Weir;

/// This build's `weir` binary and target directory (Cargo tells only tests of the root
/// package).
const WEIR: Weir = Weir::new(env!("CARGO_BIN_EXE_weir"), env!("CARGO_TARGET_TMPDIR"));

mod api;
mod bad_jobs;
mod broadcast;
mod cache;
mod clicks;
mod cluster;
mod dashboard;
mod deployments;
mod distributed;
mod event_time;
mod fuel;
mod fuel_rate;
mod golden;
mod hostile_peers;
mod joins;
mod kafka;
mod keyed_state;
mod live_swap;
mod paths;
mod polyglot;
mod polyglot_join;
mod postgres;
mod recovery;
mod sandbox;
mod servers;
mod soak;
mod state_ttl;
mod state_version;
mod streams;
mod tenants;
mod tls;
mod wordcount;
