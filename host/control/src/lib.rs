//! The cluster's control plane over `weir-net`: the messages between the JobManager,
//! its TaskManagers and clients.
//!
//! - [`protocol`]: the messages on a control stream (hello, heartbeats with progress,
//!   deploy/start/cancel, component transfer in chunks, submit, status).
//! - [`client`]: opening a session with the JobManager, and the client requests.
//!
//! It is not: the JobManager's scheduling (`weir-jobmanager`) or the TaskManager's
//! executor (`weir-taskmanager`); both speak this protocol.

pub mod client;
pub mod protocol;
