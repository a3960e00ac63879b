//! End-to-end tests through the `weir` binary and the embedded cluster.

#[path = "../support.rs"]
mod support;

mod api;
mod bad_jobs;
mod cache;
mod cluster;
mod dashboard;
mod distributed;
mod golden;
mod hostile_peers;
mod keyed_state;
mod polyglot;
mod recovery;
mod wordcount;
