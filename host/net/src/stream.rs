//! Length-framed reading and writing over QUIC streams.
//!
//! [`RawSend`]/[`RawRecv`] move opaque payloads (record batches); [`FramedSend`]/
//! [`FramedRecv`] add postcard encoding of a serde message type on top. All decoding
//! goes through the pure [`FrameDecoder`].

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::{FrameDecoder, FrameError, decode_message, encode_frame, frame_header};

/// Largest chunk taken from quinn per read: one 32 KiB batch plus headers fits, and it
/// bounds how much a reader holds beyond the frame it is assembling.
const READ_CHUNK: usize = 64 * 1024;

/// Sends length-framed opaque payloads on a QUIC send stream.
///
/// A `send` waits while the peer's stream window is exhausted: that wait is the
/// backpressure, nothing is buffered beyond the window.
#[derive(Debug)]
pub struct RawSend {
    stream: quinn::SendStream,
    max_frame: u32,
}

impl RawSend {
    /// Wraps a stream; payloads above `max_frame` bytes are refused.
    pub fn new(stream: quinn::SendStream, max_frame: u32) -> Self {
        Self { stream, max_frame }
    }

    /// Sends one frame carrying `payload`.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        let header = frame_header(payload.len(), self.max_frame)?;
        self.stream.write_all(&header).await?;
        self.stream.write_all(payload).await?;
        Ok(())
    }

    /// Sends one frame whose payload is the concatenation of `parts` (a tag and a body,
    /// say), without copying them together first.
    pub async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), FrameError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let header = frame_header(len, self.max_frame)?;
        self.stream.write_all(&header).await?;
        for p in parts {
            self.stream.write_all(p).await?;
        }
        Ok(())
    }

    /// Sends bytes that already form whole frames (header included).
    async fn send_encoded(&mut self, frames: &[u8]) -> Result<(), FrameError> {
        self.stream.write_all(frames).await?;
        Ok(())
    }

    /// Ends the stream and waits until the peer has received every byte.
    ///
    /// Waiting matters: closing the connection right after a bare QUIC `finish` can
    /// discard data still in flight. Fails if the peer stopped the stream instead.
    pub async fn finish(&mut self) -> Result<(), FrameError> {
        self.stream.finish()?;
        match self.stream.stopped().await {
            Ok(None) => Ok(()),
            Ok(Some(code)) => Err(FrameError::StoppedByPeer(code.into_inner())),
            Err(e) => Err(FrameError::Stopped(e)),
        }
    }

    /// Abandons the stream with an application error code; unsent data is dropped.
    pub fn reset(&mut self, code: u32) {
        // Already finished or reset: nothing left to abandon.
        let _ = self.stream.reset(code.into());
    }

    /// The underlying quinn stream (stream id, priority, ...).
    pub fn quinn(&mut self) -> &mut quinn::SendStream {
        &mut self.stream
    }
}

/// Receives length-framed opaque payloads from a QUIC receive stream.
#[derive(Debug)]
pub struct RawRecv {
    stream: quinn::RecvStream,
    decoder: FrameDecoder,
    /// A chunk read from quinn and how far into it the decoder has consumed.
    pending: Option<(quinn::Chunk, usize)>,
}

impl RawRecv {
    /// Wraps a stream; announced lengths above `max_frame` are a [`FrameError::Oversized`].
    pub fn new(stream: quinn::RecvStream, max_frame: u32) -> Self {
        Self { stream, decoder: FrameDecoder::new(max_frame), pending: None }
    }

    /// The next payload; `Ok(None)` when the peer finished the stream on a frame boundary.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            if let Some((chunk, pos)) = &mut self.pending {
                let (used, frame) = self.decoder.feed(&chunk.bytes[*pos..])?;
                *pos += used;
                if *pos == chunk.bytes.len() {
                    self.pending = None;
                }
                if frame.is_some() {
                    return Ok(frame);
                }
                continue;
            }
            match self.stream.read_chunk(READ_CHUNK, true).await? {
                Some(chunk) => self.pending = Some((chunk, 0)),
                None => {
                    self.decoder.finish()?;
                    return Ok(None);
                }
            }
        }
    }

    /// Tells the peer to stop sending (its writes fail with `code`); use after a
    /// protocol error, or when the consumer goes away.
    pub fn stop(&mut self, code: u32) {
        // Already stopped or finished: the peer knows.
        let _ = self.stream.stop(code.into());
    }

    /// The underlying quinn stream.
    pub fn quinn(&mut self) -> &mut quinn::RecvStream {
        &mut self.stream
    }
}

/// Sends messages of type `T`, one postcard-encoded frame each.
#[derive(Debug)]
pub struct FramedSend<T> {
    raw: RawSend,
    _msg: PhantomData<fn(&T)>,
}

impl<T: Serialize> FramedSend<T> {
    /// Wraps a stream; messages encoding to more than `max_frame` bytes are refused.
    pub fn new(stream: quinn::SendStream, max_frame: u32) -> Self {
        Self { raw: RawSend::new(stream, max_frame), _msg: PhantomData }
    }

    /// Encodes and sends one message.
    pub async fn send(&mut self, msg: &T) -> Result<(), FrameError> {
        let frame = encode_frame(msg, self.raw.max_frame)?;
        self.raw.send_encoded(&frame).await
    }

    /// Ends the stream and waits until the peer has received everything.
    pub async fn finish(&mut self) -> Result<(), FrameError> {
        self.raw.finish().await
    }

    /// The raw frame sender underneath.
    pub fn raw(&mut self) -> &mut RawSend {
        &mut self.raw
    }
}

/// Receives messages of type `T`.
#[derive(Debug)]
pub struct FramedRecv<T> {
    raw: RawRecv,
    _msg: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> FramedRecv<T> {
    /// Wraps a stream; see [`RawRecv::new`].
    pub fn new(stream: quinn::RecvStream, max_frame: u32) -> Self {
        Self { raw: RawRecv::new(stream, max_frame), _msg: PhantomData }
    }

    /// The next message; `Ok(None)` at a clean end of stream.
    pub async fn recv(&mut self) -> Result<Option<T>, FrameError> {
        match self.raw.recv().await? {
            Some(payload) => decode_message(&payload).map(Some),
            None => Ok(None),
        }
    }

    /// The raw frame receiver underneath.
    pub fn raw(&mut self) -> &mut RawRecv {
        &mut self.raw
    }
}
