//! Record exchange between subtasks: bounded in-process channels, and the routers that
//! partition a subtask's output over its downstream subtasks, wherever they run.

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use weir_types::batch::{BatchError, Cursor};
use weir_types::keygroup;
use weir_types::plan::Partitioning;

use crate::deploy::{Cancel, TaskError};

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
    /// An upstream channel broke (a remote producer vanished or sent garbage); the
    /// consumer cannot know what it missed, so it fails.
    Failed(String),
    /// A remote producer gave up because its job is failing or cancelled; it reports
    /// the cause itself, so the consumer just stops.
    Abandoned,
}

/// Where a router sends one downstream subtask's batches.
pub enum Target {
    /// A subtask in this process.
    Local(Sender<Message>),
    /// A subtask in another TaskManager, over a QUIC data stream.
    Remote(crate::dataplane::RemoteChannel),
}

impl Target {
    fn send(&mut self, batch: Vec<u8>, count: usize, cancel: &Cancel) -> Result<(), TaskError> {
        match self {
            Target::Local(tx) => send(tx, Message::Batch(batch, count), cancel),
            Target::Remote(r) => r.send(&batch, cancel),
        }
    }

    fn end(&mut self, cancel: &Cancel) -> Result<(), TaskError> {
        match self {
            Target::Local(tx) => send(tx, Message::End, cancel),
            Target::Remote(r) => r.finish(cancel),
        }
    }

    fn barrier(&mut self, id: u64, cancel: &Cancel) -> Result<(), TaskError> {
        match self {
            Target::Local(tx) => send(tx, Message::Barrier(id), cancel),
            Target::Remote(r) => r.barrier(id, cancel),
        }
    }
}

/// What a subtask's inputs yield next.
#[derive(Debug)]
pub enum Event {
    /// A record batch and its record count.
    Batch(Vec<u8>, usize),
    /// Every input delivered the barrier of checkpoint `id`: snapshot now.
    Barrier(u64),
    /// Every input ended.
    End,
}

/// A subtask's inputs: one channel per upstream producer, read in arrival order, with
/// barrier alignment. Once an input delivers a checkpoint's barrier it is held back
/// (its channel fills and its producer blocks) until every other input delivered the
/// same barrier, so the snapshot sees exactly the records before the barrier on every
/// input, as Flink's aligned checkpoints do.
pub struct Inputs {
    rxs: Vec<Receiver<Message>>,
    ended: Vec<bool>,
    held: Vec<bool>,
    aligning: Option<u64>,
}

impl Inputs {
    /// Inputs reading `rxs`, one per producer.
    pub fn new(rxs: Vec<Receiver<Message>>) -> Self {
        let n = rxs.len();
        Self { rxs, ended: vec![false; n], held: vec![false; n], aligning: None }
    }

    fn aligned(&self) -> bool {
        self.ended.iter().zip(&self.held).all(|(e, h)| *e || *h)
    }

    /// The next event, waiting as long as needed unless the job is cancelled.
    pub fn next(&mut self, cancel: &Cancel) -> Result<Event, TaskError> {
        loop {
            if let Some(id) = self.aligning
                && self.aligned()
            {
                self.aligning = None;
                self.held.iter_mut().for_each(|h| *h = false);
                return Ok(Event::Barrier(id));
            }
            let open: Vec<usize> = (0..self.rxs.len()).filter(|&i| !self.ended[i] && !self.held[i]).collect();
            let (i, msg) = match open.as_slice() {
                [] => return Ok(Event::End),
                [i] => (*i, recv(&self.rxs[*i], cancel)?),
                _ => {
                    let mut select = crossbeam_channel::Select::new();
                    for &i in &open {
                        select.recv(&self.rxs[i]);
                    }
                    let Ok(op) = select.select_timeout(POLL) else {
                        if cancel.is_cancelled() {
                            return Err(TaskError::Cancelled);
                        }
                        continue;
                    };
                    let i = open[op.index()];
                    // A vanished producer only happens while the job is torn down.
                    (i, op.recv(&self.rxs[i]).map_err(|_| TaskError::Cancelled)?)
                }
            };
            match msg {
                Message::Batch(b, n) => return Ok(Event::Batch(b, n)),
                Message::End => self.ended[i] = true,
                Message::Barrier(id) => match self.aligning {
                    Some(current) if id < current => {}
                    Some(current) if id == current => self.held[i] = true,
                    // A newer barrier supersedes an alignment that can no longer
                    // complete (the JobManager gave up on that checkpoint).
                    _ => {
                        self.aligning = Some(id);
                        self.held.iter_mut().for_each(|h| *h = false);
                        self.held[i] = true;
                    }
                },
                Message::Failed(why) => return Err(TaskError::Exchange(why)),
                Message::Abandoned => return Err(TaskError::Cancelled),
            }
        }
    }
}

/// Batches a channel buffers before its producer blocks. Each producer -> consumer pair
/// has its own channel (so checkpoint alignment can hold back one input), and with
/// batches of a few tens of KB this bounds each to about half a megabyte.
pub const CHANNEL_CAPACITY: usize = 12;

/// A router sends a batch once it holds this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;

/// How often a blocked send or receive looks at the cancel flag.
const POLL: Duration = Duration::from_millis(50);

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

/// Partitions one subtask's output over the subtasks of one downstream vertex.
pub struct Router {
    partitioning: Partitioning,
    targets: Vec<Target>,
    buffers: Vec<Vec<u8>>,
    counts: Vec<usize>,
    max_parallelism: u32,
    next: usize,
    /// Time spent in sends, which only take long when the target is full: the
    /// subtask's backpressure.
    blocked_ns: u64,
}

impl Router {
    /// A router over `targets` (one sender per downstream subtask, in subtask order).
    /// Forward edges get exactly the one target they feed.
    pub fn new(partitioning: Partitioning, targets: Vec<Target>, max_parallelism: u32) -> Self {
        let buffers = targets.iter().map(|_| Vec::with_capacity(BATCH_BYTES * 2)).collect();
        let counts = vec![0; targets.len()];
        Self { partitioning, targets, buffers, counts, max_parallelism, next: 0, blocked_ns: 0 }
    }

    /// Routes a valid plain batch of `count` records, sending every buffer that
    /// filled up.
    pub fn push(&mut self, records: &[u8], count: usize, cancel: &Cancel) -> Result<(), TaskError> {
        let n = self.targets.len();
        if n == 1 || self.partitioning == Partitioning::Forward {
            self.buffers[0].extend_from_slice(records);
            self.counts[0] += count;
        } else if self.partitioning == Partitioning::Broadcast {
            for (b, c) in self.buffers.iter_mut().zip(&mut self.counts) {
                b.extend_from_slice(records);
                *c += count;
            }
        } else {
            let mut c = Cursor::new(records);
            while c.remaining() > 0 {
                let start = c.position();
                let r = c.record().map_err(|e: BatchError| TaskError::Internal(format!("routing an invalid batch: {e}")))?;
                let t = match self.partitioning {
                    Partitioning::KeyBy => {
                        let group = keygroup::key_group(r.key, self.max_parallelism);
                        keygroup::subtask_for_key_group(group, self.max_parallelism, n as u32) as usize
                    }
                    _ => {
                        self.next = (self.next + 1) % n;
                        self.next
                    }
                };
                self.buffers[t].extend_from_slice(&records[start..c.position()]);
                self.counts[t] += 1;
            }
        }
        for t in 0..n {
            if self.buffers[t].len() >= BATCH_BYTES {
                self.send_buffer(t, cancel)?;
            }
        }
        Ok(())
    }

    fn send_buffer(&mut self, t: usize, cancel: &Cancel) -> Result<(), TaskError> {
        let full = std::mem::replace(&mut self.buffers[t], Vec::with_capacity(BATCH_BYTES * 2));
        let count = std::mem::take(&mut self.counts[t]);
        let started = std::time::Instant::now();
        let sent = self.targets[t].send(full, count, cancel);
        self.blocked_ns += started.elapsed().as_nanos() as u64;
        sent
    }

    /// Nanoseconds spent sending so far (blocked on full targets, nearly all of it).
    pub fn blocked_ns(&self) -> u64 {
        self.blocked_ns
    }

    /// Sends what is buffered, then the barrier of checkpoint `id`, to every target.
    pub fn barrier(&mut self, id: u64, cancel: &Cancel) -> Result<(), TaskError> {
        for t in 0..self.targets.len() {
            if !self.buffers[t].is_empty() {
                self.send_buffer(t, cancel)?;
            }
            self.targets[t].barrier(id, cancel)?;
        }
        Ok(())
    }

    /// Sends what is buffered and tells every target this producer is done.
    pub fn finish(&mut self, cancel: &Cancel) -> Result<(), TaskError> {
        for t in 0..self.targets.len() {
            if !self.buffers[t].is_empty() {
                self.send_buffer(t, cancel)?;
            }
            self.targets[t].end(cancel)?;
        }
        Ok(())
    }
}
