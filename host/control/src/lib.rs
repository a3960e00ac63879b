//! The cluster's control plane over `weir-net`: who is in the cluster and alive.
//!
//! - [`protocol`]: the messages on a control stream (hello, heartbeat, status).
//! - [`registry`]: the JobManager's resource view, pure: TaskManagers, their slots,
//!   heartbeats, and which are lost after the heartbeat timeout. Tested without
//!   sockets or sleeps.
//! - [`jobmanager`]: serves registrations, heartbeats and status queries.
//! - [`taskmanager`]: registers a TaskManager's slots and keeps it alive.
//!
//! It is not (yet): job submission, deployment or the data plane, which build on it.

pub mod jobmanager;
pub mod protocol;
pub mod registry;
pub mod taskmanager;
