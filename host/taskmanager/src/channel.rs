//! Bounded in-process channels into a subtask, and blocking on them until the job is
//! cancelled. A module of its own because both the routers (`exchange`) and the data
//! plane, which feeds the same channels from the network, sit on top of it.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

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
///
/// A full channel means the consumer is the bottleneck, so the producer polls for room
/// with a growing sleep rather than parking in the channel: a parked producer is woken
/// by the consumer's every receive, a futex wake that costs the busy consumer about
/// 10 µs per batch on a virtualized machine (4% of a keyed window chain). The channel
/// holds many batches, so the consumer never waits for the polling producer.
pub fn send(tx: &Sender<Message>, msg: Message, cancel: &Cancel) -> Result<(), TaskError> {
    let mut msg = match tx.try_send(msg) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(m)) => m,
        // The consumer is gone, which only happens when the job is being torn down.
        Err(TrySendError::Disconnected(_)) => return Err(TaskError::Cancelled),
    };
    let mut pause = FULL_PAUSE_MIN;
    let mut waited = Duration::ZERO;
    loop {
        std::thread::sleep(pause);
        waited += pause;
        match tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(m)) => msg = m,
            Err(TrySendError::Disconnected(_)) => return Err(TaskError::Cancelled),
        }
        if waited >= POLL {
            if cancel.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            waited = Duration::ZERO;
        }
        pause = (pause * 2).min(FULL_PAUSE_MAX);
    }
}

/// The first and longest pause of a producer polling a full channel: short enough
/// that the channel's batches outlast it.
const FULL_PAUSE_MIN: Duration = Duration::from_micros(50);
const FULL_PAUSE_MAX: Duration = Duration::from_millis(1);

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
