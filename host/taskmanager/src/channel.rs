//! Bounded in-process channels into a subtask, and blocking on them until the job is
//! cancelled. A module of its own because both the routers (`exchange`) and the data
//! plane, which feeds the same channels from the network, sit on top of it.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use crate::cancel::Cancel;
use crate::error::{ExchangeError, TaskError};

/// A message on a channel into a subtask.
#[derive(Debug)]
pub enum Message {
    /// A plain record batch and its record count. In-process batches come from
    /// checked operator output, so the consumer need not parse them again to count.
    Batch(Vec<u8>, usize),
    /// One upstream subtask has no more records.
    End,
    /// Checkpoint barrier: everything before it belongs to checkpoint `id`.
    Barrier(u64),
    /// Event time: no record at or before this timestamp follows from this producer.
    Watermark(i64),
    /// The producer went idle (true) or is active again (false): while idle it does
    /// not hold back the consumer's watermark.
    Idle(bool),
    /// An upstream channel broke (a remote producer vanished or sent garbage); the
    /// consumer cannot know what it missed, so it fails.
    Failed(ExchangeError),
    /// A remote producer gave up because its job is failing or cancelled; it reports
    /// the cause itself, so the consumer just stops.
    Abandoned,
}

/// Batches a channel buffers before its producer blocks. Each producer -> consumer pair
/// has its own channel (so checkpoint alignment can hold back one input), and with
/// batches of a few tens of KB this bounds each to about half a megabyte.
pub const CHANNEL_CAPACITY: usize = 12;

/// How often a blocked send or receive looks at the cancel flag.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// A new bounded channel into a subtask.
pub fn channel() -> (Sender<Message>, Receiver<Message>) {
    crossbeam_channel::bounded(CHANNEL_CAPACITY)
}

/// Sends, waiting while the channel is full, until the job is cancelled.
pub fn send(tx: &Sender<Message>, mut msg: Message, cancel: &Cancel) -> Result<(), TaskError> {
    loop {
        match tx.send_timeout(msg, POLL) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(m)) => {
                if cancel.is_cancelled() {
                    return Err(TaskError::Cancelled);
                }
                msg = m;
            }
            // The consumer is gone, which only happens when the job is being torn down.
            Err(SendTimeoutError::Disconnected(_)) => return Err(TaskError::Cancelled),
        }
    }
}

/// Receives, waiting until a message arrives or the job is cancelled.
pub fn recv(rx: &Receiver<Message>, cancel: &Cancel) -> Result<Message, TaskError> {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(m) => return Ok(m),
            Err(RecvTimeoutError::Timeout) if !cancel.is_cancelled() => {}
            Err(_) => return Err(TaskError::Cancelled),
        }
    }
}
