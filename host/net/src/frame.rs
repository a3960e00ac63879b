//! The wire framing, without I/O: `u32` little-endian payload length, then the payload.
//!
//! [`FrameDecoder`] is a pure state machine fed with whatever byte slices the stream
//! delivers; it is what the fuzz target and the property tests drive. A length above
//! the configured maximum is rejected from the 4 header bytes alone, before anything is
//! allocated, so a hostile or broken peer cannot make us reserve memory it never sends.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes in a frame header (the little-endian `u32` payload length).
pub const HEADER_LEN: usize = 4;

/// Default largest payload accepted or sent: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Payload buffers grow in steps of at most this much, so a header that announces a big
/// (but allowed) frame costs memory only as the bytes actually arrive.
const GROW_STEP: usize = 64 * 1024;

/// Everything that can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A header announced (or a sender tried) a payload above the maximum frame size.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    Oversized {
        /// The announced or attempted payload length.
        len: u64,
        /// The configured maximum.
        max: u32,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame: {got} of {expected} bytes ({part})")]
    Truncated {
        /// `"header"` or `"payload"`.
        part: &'static str,
        /// Bytes the unfinished part needed.
        expected: usize,
        /// Bytes of it that arrived.
        got: usize,
    },
    /// The payload is not a valid postcard encoding of the expected message type.
    #[error("frame payload does not decode: {0}")]
    Decode(#[source] postcard::Error),
    /// The payload decoded but left bytes over: the peer speaks another message type.
    #[error("frame payload has {extra} trailing bytes after the message")]
    TrailingBytes {
        /// Bytes left after the decoded message.
        extra: usize,
    },
    /// A message could not be encoded (a serde type that postcard does not support).
    #[error("message does not encode: {0}")]
    Encode(#[source] postcard::Error),
    /// Reading the QUIC stream failed (reset by the peer, connection lost, ...).
    #[error("stream read failed: {}", read_detail(.0))]
    Read(#[from] quinn::ReadError),
    /// Writing the QUIC stream failed (stopped by the peer, connection lost, ...).
    #[error("stream write failed: {}", write_detail(.0))]
    Write(#[from] quinn::WriteError),
    /// The peer stopped the stream (it will read no more) with this application code.
    #[error("peer stopped the stream with code {0}")]
    StoppedByPeer(u64),
    /// Waiting for the peer to acknowledge the stream's end failed.
    #[error("stream end not acknowledged: {0}")]
    Stopped(#[source] quinn::StoppedError),
    /// The stream was already finished or reset locally.
    #[error("stream already closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

impl FrameError {
    /// True for errors caused by what the peer sent (bad framing or encoding), as
    /// opposed to transport failures; such a peer is broken or hostile, and the caller
    /// should close the connection with [`crate::CLOSE_PROTOCOL_ERROR`].
    pub fn is_protocol_violation(&self) -> bool {
        matches!(self, Self::Oversized { .. } | Self::Truncated { .. } | Self::Decode(_) | Self::TrailingBytes { .. })
    }

    /// The connection-level cause when the stream failed because the connection did
    /// (closed by the peer, refused by TLS, timed out).
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::Read(quinn::ReadError::ConnectionLost(e)) | Self::Write(quinn::WriteError::ConnectionLost(e)) => Some(e),
            _ => None,
        }
    }
}

// quinn's "connection lost" omits why; the why (e.g. a TLS alert) is what operators need.
fn read_detail(e: &quinn::ReadError) -> String {
    match e {
        quinn::ReadError::ConnectionLost(c) => format!("connection lost: {c}"),
        other => other.to_string(),
    }
}

fn write_detail(e: &quinn::WriteError) -> String {
    match e {
        quinn::WriteError::ConnectionLost(c) => format!("connection lost: {c}"),
        other => other.to_string(),
    }
}

/// Where the decoder is inside the current frame.
#[derive(Debug)]
enum State {
    /// Collecting the 4 header bytes; `got` of them are in `bytes`.
    Header { bytes: [u8; HEADER_LEN], got: usize },
    /// Collecting `len` payload bytes into `buf`.
    Payload { len: usize, buf: Vec<u8> },
}

/// Incremental frame decoder: feed it byte slices in any split, get whole payloads out.
///
/// Pure (no I/O, no async); every input gives a frame, "need more", or a typed error,
/// never a panic.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame: u32,
    state: State,
}

impl FrameDecoder {
    /// A decoder rejecting payloads longer than `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        Self { max_frame, state: State::Header { bytes: [0; HEADER_LEN], got: 0 } }
    }

    /// The configured maximum payload length.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// Consumes bytes from `input` up to the end of at most one frame.
    ///
    /// Returns how many bytes were consumed and the payload if a frame completed; the
    /// caller feeds the rest of `input` again. After an error the decoder is poisoned
    /// in the sense that the stream is out of sync: the caller must drop the stream.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let mut used = 0;
        if let State::Header { bytes, got } = &mut self.state {
            let take = (HEADER_LEN - *got).min(input.len());
            bytes[*got..*got + take].copy_from_slice(&input[..take]);
            *got += take;
            used = take;
            if *got < HEADER_LEN {
                return Ok((used, None));
            }
            let len = u32::from_le_bytes(*bytes);
            if len > self.max_frame {
                return Err(FrameError::Oversized { len: u64::from(len), max: self.max_frame });
            }
            // u32 -> usize cannot lose bits on the 32/64-bit targets we build for.
            let len = len as usize;
            self.state = State::Payload { len, buf: Vec::with_capacity(len.min(GROW_STEP)) };
        }
        let State::Payload { len, buf } = &mut self.state else {
            return Ok((used, None));
        };
        let take = (*len - buf.len()).min(input.len() - used);
        buf.extend_from_slice(&input[used..used + take]);
        used += take;
        if buf.len() < *len {
            return Ok((used, None));
        }
        let payload = std::mem::take(buf);
        self.state = State::Header { bytes: [0; HEADER_LEN], got: 0 };
        Ok((used, Some(payload)))
    }

    /// Feeds a whole slice, collecting every completed payload (convenience for tests
    /// and the fuzzer; the stream reader calls [`FrameDecoder::feed`] directly).
    pub fn feed_all(&mut self, mut input: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while !input.is_empty() {
            let (used, frame) = self.feed(input)?;
            input = &input[used..];
            out.extend(frame);
        }
        Ok(out)
    }

    /// Call at end of stream: `Ok` only if the stream ended on a frame boundary.
    pub fn finish(&self) -> Result<(), FrameError> {
        match &self.state {
            State::Header { got: 0, .. } => Ok(()),
            State::Header { got, .. } => Err(FrameError::Truncated { part: "header", expected: HEADER_LEN, got: *got }),
            State::Payload { len, buf } => Err(FrameError::Truncated { part: "payload", expected: *len, got: buf.len() }),
        }
    }
}

/// Decodes one message from a frame payload; trailing bytes are an error.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, rest) = postcard::take_from_bytes(payload).map_err(FrameError::Decode)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(msg)
}

/// The 4 header bytes for a payload of `len` bytes, or `Oversized`.
pub fn frame_header(len: usize, max_frame: u32) -> Result<[u8; HEADER_LEN], FrameError> {
    match u32::try_from(len) {
        Ok(n) if n <= max_frame => Ok(n.to_le_bytes()),
        _ => Err(FrameError::Oversized { len: len as u64, max: max_frame }),
    }
}

/// Encodes `msg` as one complete frame (header + postcard payload).
pub fn encode_frame<T: Serialize>(msg: &T, max_frame: u32) -> Result<Vec<u8>, FrameError> {
    // Reserve the header in place, then patch it, so the payload is written once.
    let mut out = postcard::to_extend(msg, vec![0u8; HEADER_LEN]).map_err(FrameError::Encode)?;
    let header = frame_header(out.len() - HEADER_LEN, max_frame)?;
    out[..HEADER_LEN].copy_from_slice(&header);
    Ok(out)
}

#[cfg(test)]
mod tests;
