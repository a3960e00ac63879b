//! Data-plane channels: one unidirectional QUIC stream per producer -> consumer channel.
//!
//! The first frame is a serde header saying which channel the stream carries (the type
//! is the caller's); every later frame is an opaque record batch. QUIC's per-stream flow
//! control is the credit-based backpressure: a consumer that stops reading stops its
//! producer after at most [`crate::NetConfig::stream_window`] bytes, and one slow
//! channel does not block the others on the same connection.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::endpoint::{Connection, NetError};
use crate::frame::{FrameError, decode_message};
use crate::stream::{RawRecv, RawSend};

/// Opens a data stream to the peer and sends `header` as its first frame.
///
/// The peer's [`accept_data_stream`] sees the stream as soon as the header is sent.
pub async fn open_data_stream<H: Serialize>(conn: &Connection, header: &H) -> Result<RawSend, NetError> {
    let stream = conn.quinn().open_uni().await?;
    let mut send = RawSend::new(stream, conn.max_frame());
    let payload = postcard::to_allocvec(header).map_err(FrameError::Encode)?;
    send.send(&payload).await?;
    Ok(send)
}

/// Accepts the next data stream from the peer and reads its header.
pub async fn accept_data_stream<H: DeserializeOwned>(conn: &Connection) -> Result<(H, RawRecv), NetError> {
    let stream = conn.quinn().accept_uni().await?;
    let mut recv = RawRecv::new(stream, conn.max_frame());
    let payload = recv.recv().await?.ok_or(NetError::MissingHeader)?;
    let header = decode_message(&payload)?;
    Ok((header, recv))
}
