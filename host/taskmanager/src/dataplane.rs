//! Record exchange between TaskManagers: one QUIC data stream per producer -> consumer
//! channel, whose header names the consumer's input ([`ChannelId`]) and whose frames
//! are record batches.
//!
//! Subtasks run on plain threads; the network runs on tokio. A producer thread writes
//! its stream through [`tokio::runtime::Handle::block_on`], so QUIC's per-stream flow
//! control blocks it directly: no queue sits between the router and the wire. On the
//! consumer side one tokio task per stream validates each batch and feeds the
//! subtask's bounded input channel, waiting (off the async workers) while it is full.
//! Backpressure therefore runs end to end: slow consumer -> full channel -> pump stops
//! reading -> stream window closes -> producer blocks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tokio::runtime::Handle;
use weir_control::protocol::TASKMANAGER_PREFIX;
use weir_net::{CLOSE_PROTOCOL_ERROR, CLOSE_UNAUTHORIZED, Connection, Endpoint, FrameError, NetError, RawRecv, RawSend, quinn};
use weir_types::batch;
use weir_types::deployment::ChannelId;
use weir_types::ids::RunId;

use crate::cancel::Cancel;
use crate::channel::{self, Message};
use crate::error::{Bug, ExchangeError, InputError, OutputError, TaskError};

/// Stream reset code: the producer gave up (its job was cancelled or it failed).
const RESET_ABANDONED: u32 = 1;
/// Stream stop code: no subtask here consumes that channel.
const STOP_UNKNOWN_CHANNEL: u32 = 2;

/// First byte of a data frame: a record batch follows.
const TAG_BATCH: u8 = 0;
/// First byte of a data frame: a checkpoint id (u64 LE) follows.
const TAG_BARRIER: u8 = 1;
/// Frame tag: a watermark (`i64` LE) follows.
const TAG_WATERMARK: u8 = 2;
/// Frame tag: an idleness status follows (`1` idle, `0` active).
const TAG_IDLE: u8 = 3;

/// How often a blocked network send looks at the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// A TaskManager's data plane: its endpoint, connections to peers, and the inputs of
/// its subtasks that remote producers feed.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    handle: Handle,
    endpoint: Endpoint,
    peers: tokio::sync::Mutex<HashMap<SocketAddr, Connection>>,
    inputs: Mutex<HashMap<ChannelId, (Sender<Message>, Cancel)>>,
}

impl DataPlane {
    /// A data plane on `endpoint`; `handle` runs its network tasks.
    pub fn new(handle: Handle, endpoint: Endpoint) -> Self {
        let inner = Inner { handle, endpoint, peers: Default::default(), inputs: Default::default() };
        Self { inner: Arc::new(inner) }
    }

    /// The endpoint, also used to reach the JobManager.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    fn lock_inputs(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, (Sender<Message>, Cancel)>> {
        // Single inserts and removals; a panicking holder leaves the map consistent.
        self.inner.inputs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets remote producers feed a local subtask's input.
    pub fn register_input(&self, id: ChannelId, tx: Sender<Message>, cancel: Cancel) {
        self.lock_inputs().insert(id, (tx, cancel));
    }

    /// Forgets every input of a job run (it ended).
    pub fn unregister_run(&self, run: &RunId) {
        self.lock_inputs().retain(|id, _| id.run != *run);
    }

    /// A channel to the subtask `id` on the TaskManager at `addr`; connects lazily.
    pub fn remote(&self, addr: SocketAddr, id: ChannelId) -> RemoteChannel {
        RemoteChannel { plane: self.inner.clone(), addr, id, stream: None, done: false }
    }

    /// Accepts peers' data streams until the endpoint closes.
    pub async fn serve(self) {
        while let Some(conn) = self.inner.endpoint.accept().await {
            let plane = self.clone();
            tokio::spawn(async move { plane.serve_connection(conn).await });
        }
    }

    async fn serve_connection(&self, conn: Connection) {
        if !conn.peer_name().starts_with(TASKMANAGER_PREFIX) {
            tracing::warn!(peer = %conn.peer_name(), "refused a data connection: only taskmanagers exchange records");
            conn.close(CLOSE_UNAUTHORIZED, "only taskmanagers exchange records");
            return;
        }
        loop {
            match weir_net::accept_data_stream::<ChannelId>(&conn).await {
                Ok((id, recv)) => {
                    let target = self.lock_inputs().get(&id).cloned();
                    match target {
                        Some((tx, cancel)) => {
                            let conn = conn.clone();
                            tokio::spawn(async move { pump(conn, id, recv, tx, cancel).await });
                        }
                        None => {
                            tracing::warn!(peer = %conn.peer_name(), ?id, "data stream for a channel that is not here (job ended?)");
                            let mut recv = recv;
                            recv.stop(STOP_UNKNOWN_CHANNEL);
                        }
                    }
                }
                Err(e) => {
                    if is_protocol_violation(&e) {
                        tracing::error!(peer = %conn.peer_name(), "closing data connection: bad frame: {e}");
                        conn.close(CLOSE_PROTOCOL_ERROR, "bad frame");
                    }
                    return;
                }
            }
        }
    }
}

fn is_protocol_violation(e: &NetError) -> bool {
    match e {
        NetError::Frame(f) => f.is_protocol_violation(),
        NetError::MissingHeader => true,
        _ => false,
    }
}

/// Moves one data stream's batches into a subtask's input channel.
async fn pump(conn: Connection, id: ChannelId, mut recv: RawRecv, tx: Sender<Message>, cancel: Cancel) {
    let fail = |source: InputError| Message::Failed(ExchangeError::Input { peer: conn.peer_name().to_string(), source });
    let last = loop {
        match recv.recv().await {
            Ok(Some(frame)) => match decode_frame(frame) {
                Ok(msg) => {
                    if deliver(&tx, msg, &cancel).is_err() {
                        recv.stop(STOP_UNKNOWN_CHANNEL);
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(peer = %conn.peer_name(), ?id, "closing data connection: {e}");
                    conn.close(CLOSE_PROTOCOL_ERROR, "invalid data frame");
                    break fail(e);
                }
            },
            Ok(None) => break Message::End,
            Err(FrameError::Read(quinn::ReadError::Reset(code))) if code.into_inner() == u64::from(RESET_ABANDONED) => break Message::Abandoned,
            Err(e) => {
                if e.is_protocol_violation() {
                    tracing::error!(peer = %conn.peer_name(), ?id, "closing data connection: bad frame: {e}");
                    conn.close(CLOSE_PROTOCOL_ERROR, "bad frame");
                }
                break fail(e.into());
            }
        }
    };
    // A cancelled consumer no longer listens; nothing else to tell it.
    let _ = deliver(&tx, last, &cancel);
}

/// A data frame as a message; a peer's frame is checked through and through, since
/// the consumer will trust what it gets.
fn decode_frame(mut frame: Vec<u8>) -> Result<Message, InputError> {
    match frame.first() {
        Some(&TAG_BATCH) => {
            frame.remove(0);
            let count = batch::validate(&frame).map_err(InputError::Batch)?;
            Ok(Message::Batch(frame, count))
        }
        Some(&TAG_BARRIER) => match <[u8; 8]>::try_from(&frame[1..]) {
            Ok(id) => Ok(Message::Barrier(u64::from_le_bytes(id))),
            Err(_) => Err(InputError::Barrier(frame.len())),
        },
        Some(&TAG_WATERMARK) => match <[u8; 8]>::try_from(&frame[1..]) {
            Ok(ts) => Ok(Message::Watermark(i64::from_le_bytes(ts))),
            Err(_) => Err(InputError::Watermark(frame.len())),
        },
        Some(&TAG_IDLE) => match frame[1..] {
            [idle @ (0 | 1)] => Ok(Message::Idle(idle == 1)),
            _ => Err(InputError::Watermark(frame.len())),
        },
        Some(&tag) => Err(InputError::Tag(tag)),
        None => Err(InputError::Empty),
    }
}

/// Hands a message to a subtask, leaving the async worker while the channel is full.
fn deliver(tx: &Sender<Message>, msg: Message, cancel: &Cancel) -> Result<(), TaskError> {
    match tx.try_send(msg) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(msg)) => tokio::task::block_in_place(|| channel::send(tx, msg, cancel)),
        Err(TrySendError::Disconnected(_)) => Err(TaskError::Cancelled),
    }
}

/// The producer's end of a channel to a subtask in another TaskManager.
pub struct RemoteChannel {
    plane: Arc<Inner>,
    addr: SocketAddr,
    id: ChannelId,
    stream: Option<RawSend>,
    done: bool,
}

impl RemoteChannel {
    /// Sends one batch, blocking while the consumer's window is full.
    pub fn send(&mut self, batch: &[u8], cancel: &Cancel) -> Result<(), TaskError> {
        self.send_frame(&[TAG_BATCH], batch, cancel)
    }

    /// Sends the barrier of checkpoint `id`.
    pub fn barrier(&mut self, id: u64, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_frame(&[TAG_BARRIER], &id.to_le_bytes(), cancel)
    }

    /// Sends a watermark.
    pub fn watermark(&mut self, ts: i64, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_frame(&[TAG_WATERMARK], &ts.to_le_bytes(), cancel)
    }

    /// Sends an idleness status.
    pub fn idle(&mut self, idle: bool, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_frame(&[TAG_IDLE], &[u8::from(idle)], cancel)
    }

    fn send_frame(&mut self, tag: &[u8], body: &[u8], cancel: &Cancel) -> Result<(), TaskError> {
        let handle = self.plane.handle.clone();
        handle.block_on(until_cancelled(cancel, async {
            self.open().await?;
            let Some(s) = self.stream.as_mut() else { return Err(Bug::StreamVanished.into()) };
            s.send_parts(&[tag, body]).await.map_err(|e| channel_error(self.addr, &self.id, e))
        }))
    }

    /// Ends the stream: the consumer sees this producer's end of input.
    pub fn finish(&mut self, cancel: &Cancel) -> Result<(), TaskError> {
        let handle = self.plane.handle.clone();
        handle.block_on(until_cancelled(cancel, async {
            self.open().await?;
            let Some(s) = self.stream.as_mut() else { return Err(Bug::StreamVanished.into()) };
            let r = s.finish().await;
            self.done = true;
            r.map_err(|e| channel_error(self.addr, &self.id, e))
        }))
    }

    async fn open(&mut self) -> Result<(), TaskError> {
        if self.stream.is_none() {
            let conn = self.connection().await?;
            let s = weir_net::open_data_stream(&conn, &self.id).await.map_err(|e| channel_error(self.addr, &self.id, e))?;
            self.stream = Some(s);
        }
        Ok(())
    }

    async fn connection(&self) -> Result<Connection, TaskError> {
        let mut peers = self.plane.peers.lock().await;
        if let Some(c) = peers.get(&self.addr)
            && c.quinn().close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let conn = self.plane.endpoint.connect(self.addr).await.map_err(|e| channel_error(self.addr, &self.id, e))?;
        if !conn.peer_name().starts_with(TASKMANAGER_PREFIX) {
            return Err(ExchangeError::NotATaskManager { addr: self.addr, name: conn.peer_name().to_string() }.into());
        }
        peers.insert(self.addr, conn.clone());
        Ok(conn)
    }
}

fn channel_error(addr: SocketAddr, id: &ChannelId, e: impl Into<OutputError>) -> TaskError {
    ExchangeError::Output { addr, vertex: id.vertex, subtask: id.subtask, source: e.into() }.into()
}

impl Drop for RemoteChannel {
    fn drop(&mut self) {
        // Dropping a quinn stream finishes it cleanly, which the consumer would take
        // for a complete input; a producer that stopped early must say it gave up.
        if !self.done
            && let Some(s) = self.stream.as_mut()
        {
            s.reset(RESET_ABANDONED);
        }
    }
}

async fn until_cancelled<T>(cancel: &Cancel, work: impl Future<Output = Result<T, TaskError>>) -> Result<T, TaskError> {
    let watch = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        r = work => r,
        () = watch => Err(TaskError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(body);
        f
    }

    /// A peer's control frames are decoded exactly, and any other length or value is
    /// refused (the consumer would otherwise trust a garbled watermark).
    #[test]
    fn watermark_and_idleness_frames_are_checked() {
        assert!(matches!(decode_frame(frame(TAG_WATERMARK, &(-7i64).to_le_bytes())), Ok(Message::Watermark(-7))));
        assert!(matches!(decode_frame(frame(TAG_WATERMARK, &i64::MAX.to_le_bytes())), Ok(Message::Watermark(i64::MAX))));
        assert!(matches!(decode_frame(frame(TAG_IDLE, &[1])), Ok(Message::Idle(true))));
        assert!(matches!(decode_frame(frame(TAG_IDLE, &[0])), Ok(Message::Idle(false))));
        assert!(matches!(decode_frame(frame(TAG_WATERMARK, &[0; 7])), Err(InputError::Watermark(8))));
        assert!(matches!(decode_frame(frame(TAG_WATERMARK, &[0; 9])), Err(InputError::Watermark(10))));
        assert!(matches!(decode_frame(frame(TAG_IDLE, &[2])), Err(InputError::Watermark(2))));
        assert!(matches!(decode_frame(frame(TAG_IDLE, &[])), Err(InputError::Watermark(1))));
        assert!(matches!(decode_frame(frame(9, &[])), Err(InputError::Tag(9))));
    }
}
