//! weir-net: the QUIC transport between Weir nodes, JobManager <-> TaskManager (control
//! plane) and TaskManager <-> TaskManager (data plane).
//!
//! Map:
//! - [`identity`]: the cluster CA ([`ClusterCa`]), node credentials ([`NodeIdentity`]),
//!   the trust root ([`CaCert`]); PEM files on disk.
//! - `tls`: rustls/quinn configs. TLS 1.3, both sides present a certificate chaining to
//!   the cluster CA, ALPN [`ALPN`]; no plaintext or one-sided mode exists.
//! - `endpoint`: [`Endpoint`] (bind/connect/accept) and [`Connection`] (peer name,
//!   control streams, close codes).
//! - [`frame`]: the pure wire format, `u32` LE length + payload, and [`FrameDecoder`]
//!   (no I/O; fuzzed by `host/net/fuzz`).
//! - `stream`: [`FramedSend`]/[`FramedRecv`] (postcard messages) and [`RawSend`]/
//!   [`RawRecv`] (opaque payloads) over quinn streams.
//! - `data`: [`open_data_stream`]/[`accept_data_stream`], one stream per channel,
//!   backpressured by QUIC flow control.
//!
//! Everything async runs on tokio; see [`Endpoint::bind`].
//!
//! It is not: a cluster protocol (message types, membership, retries and reconnects
//! belong to the JobManager and TaskManager), nor a general-purpose RPC library.

pub mod frame;
pub mod identity;

mod data;
mod endpoint;
mod stream;
mod tls;

pub use data::{accept_data_stream, open_data_stream};
pub use endpoint::{CLOSE_LOST, CLOSE_OK, CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, NetError};
pub use frame::{DEFAULT_MAX_FRAME, FrameDecoder, FrameError};
pub use identity::{CLUSTER_SERVER_NAME, CaCert, ClusterCa, IdentityError, NodeIdentity, ServerIdentity};
pub use stream::{FramedRecv, FramedSend, RawRecv, RawSend};
pub use tls::{ALPN, NetConfig, TlsError};

/// Re-exported so callers can match on connection errors without naming the version.
pub use quinn;
