//! Shared helpers: a cluster of identities, loopback endpoints, bounded waits.
#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_net::{ClusterCa, Endpoint, NetConfig, NodeIdentity};

/// Upper bound for any single wait; generous for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// A control-plane-like message type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Register { name: String, slots: u32 },
    Ack { id: u64 },
    Deploy { task: String, payload: Vec<u8> },
}

/// A CA plus identities for `names`.
pub fn cluster(names: &[&str]) -> (ClusterCa, Vec<NodeIdentity>) {
    let ca = ClusterCa::generate().expect("CA generates");
    let ids = names.iter().map(|n| ca.issue(n).expect("node cert issues")).collect();
    (ca, ids)
}

/// An endpoint on an ephemeral loopback port.
pub fn bind(id: &NodeIdentity, ca: &ClusterCa) -> Endpoint {
    bind_with(id, ca, &NetConfig::default())
}

pub fn bind_with(id: &NodeIdentity, ca: &ClusterCa, cfg: &NetConfig) -> Endpoint {
    Endpoint::bind_with("127.0.0.1:0".parse().expect("addr"), id, ca.cert(), cfg).expect("endpoint binds")
}

/// Awaits `f`, failing the test instead of hanging if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds (bounded by [`WAIT`]).
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
