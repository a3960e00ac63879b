//! The cluster's control plane over `weir-net`: the messages between the JobManager,
//! its TaskManagers and clients, and the JobManager's resource view.
//!
//! - [`protocol`]: the messages on a control stream (hello, heartbeats with progress,
//!   deploy/start/cancel, component transfer in chunks, submit, status).
//! - [`registry`]: the JobManager's resource view, pure: TaskManagers, their slots,
//!   heartbeats, and which are lost after the heartbeat timeout. Tested without
//!   sockets or sleeps.
//! - [`client`]: opening a session with the JobManager, and the client requests.
//!
//! It is not: the JobManager's scheduling (`weir-jobmanager`) or the TaskManager's
//! executor (`weir-taskmanager`); both speak this protocol.

pub mod client;
pub mod protocol;
pub mod registry;
