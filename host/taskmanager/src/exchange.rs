//! Record exchange between subtasks: the routers that partition a subtask's output over
//! its downstream subtasks, wherever they run, and a subtask's inputs with barrier
//! alignment. The bounded channels themselves come from `channel` (re-exported here).

use std::collections::VecDeque;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use weir_types::batch::{BatchError, Cursor};
use weir_types::keygroup;
use weir_types::plan::Partitioning;

use crate::alignment::{Alignment, Decision};
use crate::cancel::Cancel;
use crate::channel::POLL;
pub use crate::channel::{CHANNEL_CAPACITY, Message, channel, recv, send};
use crate::error::{Bug, TaskError};
use crate::watermark::{Emit, Valve};

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

    fn watermark(&mut self, ts: i64, cancel: &Cancel) -> Result<(), TaskError> {
        match self {
            Target::Local(tx) => send(tx, Message::Watermark(ts), cancel),
            Target::Remote(r) => r.watermark(ts, cancel),
        }
    }

    fn idle(&mut self, idle: bool, cancel: &Cancel) -> Result<(), TaskError> {
        match self {
            Target::Local(tx) => send(tx, Message::Idle(idle), cancel),
            Target::Remote(r) => r.idle(idle, cancel),
        }
    }
}

/// What a subtask's inputs yield next.
#[derive(Debug)]
pub enum Event {
    /// A record batch, its record count, and the head operator's input it came
    /// through (1: a connect's second input, else 0).
    Batch(Vec<u8>, usize, u32),
    /// Every input delivered the barrier of checkpoint `id`: snapshot now.
    Barrier(u64),
    /// The inputs' combined watermark advanced to this.
    Watermark(i64),
    /// Every input that has not ended went idle (true), or one is active again (false).
    Idle(bool),
    /// Nothing arrived before the deadline given to [`Inputs::next`].
    Timeout,
    /// Every input ended.
    End,
}

/// A subtask's inputs: one channel per upstream producer, read in arrival order, with
/// barrier alignment. Once an input delivers a checkpoint's barrier it is held back
/// (its channel fills and its producer blocks) until every other input delivered the
/// same barrier, so the snapshot sees exactly the records before the barrier on every
/// input, as Flink's aligned checkpoints do. [`Alignment`] decides which inputs are
/// held and when a barrier is aligned; this only moves the messages.
///
/// Watermarks are combined the same way over the inputs by a [`Valve`]: the subtask
/// sees the minimum over its active inputs, once it advances.
pub struct Inputs {
    rxs: Vec<Receiver<Message>>,
    alignment: Alignment,
    valve: Valve,
    /// Per channel, the head operator's input it feeds.
    input_of: Vec<u32>,
    /// Events decided but not yet handed out (one message can yield several).
    ready: VecDeque<Event>,
}

impl Inputs {
    /// Inputs reading `rxs`, one per producer.
    pub fn new(rxs: Vec<Receiver<Message>>) -> Self {
        let alignment = Alignment::new(rxs.len());
        let valve = Valve::new(rxs.len());
        let input_of = vec![0; rxs.len()];
        Self { rxs, alignment, valve, input_of, ready: VecDeque::new() }
    }

    /// Tags each channel's batches with the head operator's input it feeds (one per
    /// channel, in order; a connect's channels feed input 0 or 1). Barriers and
    /// watermarks stay combined over all channels, whichever input they feed.
    pub fn feeding(self, input_of: Vec<u32>) -> Self {
        Self { input_of, ..self }
    }

    /// The next event, waiting as long as needed unless the job is cancelled.
    pub fn next(&mut self, cancel: &Cancel) -> Result<Event, TaskError> {
        self.next_until(cancel, None)
    }

    /// The next event, or [`Event::Timeout`] once `deadline` passed without one.
    pub fn next_until(&mut self, cancel: &Cancel, deadline: Option<Instant>) -> Result<Event, TaskError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(Event::Timeout);
            }
            // Empty only once every input ended: alignment never holds back every
            // input that is left.
            let open: Vec<usize> = self.alignment.readable().collect();
            let (i, msg) = match open.as_slice() {
                [] => return Ok(Event::End),
                [i] if deadline.is_none() => (*i, recv(&self.rxs[*i], cancel)?),
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
            let decision = match msg {
                Message::Batch(b, n) => return Ok(Event::Batch(b, n, self.input_of.get(i).copied().unwrap_or(0))),
                Message::End => {
                    // The watermark an input's end releases comes before the end.
                    let emits = self.valve.end(i);
                    self.queue(emits);
                    self.alignment.on_end(i)
                }
                Message::Barrier(id) => self.alignment.on_barrier(i, id),
                Message::Watermark(ts) => {
                    let emits = self.valve.watermark(i, ts);
                    self.queue(emits);
                    continue;
                }
                Message::Idle(idle) => {
                    let emits = if idle { self.valve.idle(i) } else { self.valve.wake(i) };
                    self.queue(emits);
                    continue;
                }
                Message::Failed(why) => return Err(why.into()),
                Message::Abandoned => return Err(TaskError::Cancelled),
            };
            match decision {
                Decision::Continue => {}
                Decision::Aligned(id) => self.ready.push_back(Event::Barrier(id)),
                Decision::End => self.ready.push_back(Event::End),
            }
        }
    }

    fn queue(&mut self, emits: Vec<Emit>) {
        for e in emits {
            self.ready.push_back(match e {
                Emit::Watermark(ts) => Event::Watermark(ts),
                Emit::Idle => Event::Idle(true),
                Emit::Active => Event::Idle(false),
            });
        }
    }
}

/// A router sends a batch once it holds this many bytes.
pub const BATCH_BYTES: usize = 32 * 1024;

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
    /// The side output (by index) whose records it routes; `None`: the main output.
    side_output: Option<u32>,
}

impl Router {
    /// A router over `targets` (one sender per downstream subtask, in subtask order).
    /// Forward edges get exactly the one target they feed.
    pub fn new(partitioning: Partitioning, targets: Vec<Target>, max_parallelism: u32) -> Self {
        let buffers = targets.iter().map(|_| Vec::with_capacity(BATCH_BYTES * 2)).collect();
        let counts = vec![0; targets.len()];
        Self { partitioning, targets, buffers, counts, max_parallelism, next: 0, blocked_ns: 0, side_output: None }
    }

    /// The same router for the records of side output `side` (`None`: the main output).
    /// Control messages go through every router alike.
    pub fn for_side_output(self, side_output: Option<u32>) -> Self {
        Self { side_output, ..self }
    }

    /// The side output it routes, `None` for the main output.
    pub fn side_output(&self) -> Option<u32> {
        self.side_output
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
                let r = c.record().map_err(|source: BatchError| Bug::InvalidBatch { at: "routing an invalid batch", source })?;
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
        self.send_to_every_target(cancel, |t, cancel| t.barrier(id, cancel))
    }

    /// Sends what is buffered, then the watermark `ts`, to every target: records
    /// before a watermark must reach the consumer before it.
    pub fn watermark(&mut self, ts: i64, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_to_every_target(cancel, |t, cancel| t.watermark(ts, cancel))
    }

    /// Tells every target this producer went idle or is active again.
    pub fn idle(&mut self, idle: bool, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_to_every_target(cancel, |t, cancel| t.idle(idle, cancel))
    }

    /// Sends what is buffered and tells every target this producer is done.
    pub fn finish(&mut self, cancel: &Cancel) -> Result<(), TaskError> {
        self.send_to_every_target(cancel, Target::end)
    }

    /// Sends each target what is buffered for it, then `control`: a control message
    /// never overtakes the records before it.
    fn send_to_every_target(
        &mut self,
        cancel: &Cancel,
        mut control: impl FnMut(&mut Target, &Cancel) -> Result<(), TaskError>,
    ) -> Result<(), TaskError> {
        for t in 0..self.targets.len() {
            if !self.buffers[t].is_empty() {
                self.send_buffer(t, cancel)?;
            }
            control(&mut self.targets[t], cancel)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ExchangeError, InputError};

    /// `n` in-memory input channels, with their producers' ends.
    fn inputs(n: usize) -> (Vec<Sender<Message>>, Inputs) {
        let (txs, rxs) = (0..n).map(|_| channel()).unzip();
        (txs, Inputs::new(rxs))
    }

    fn batch(tag: u8) -> Message {
        Message::Batch(vec![tag], 1)
    }

    /// A connect's channels: batches name their input; the watermark is the minimum
    /// over both inputs' channels and a barrier aligns over all of them.
    #[test]
    fn a_connects_batches_name_their_input_and_both_inputs_align_and_hold_the_watermark() {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..3).map(|_| channel()).unzip();
        let mut inputs = Inputs::new(rxs).feeding(vec![0, 0, 1]);
        put(&txs[2], batch(7));
        assert!(matches!(next(&mut inputs), Event::Batch(b, 1, 1) if b == [7]));
        put(&txs[0], batch(8));
        assert!(matches!(next(&mut inputs), Event::Batch(b, 1, 0) if b == [8]));
        for (tx, w) in txs.iter().zip([50, 40, 30]) {
            put(tx, Message::Watermark(w));
        }
        put(&txs[2], Message::Barrier(1));
        put(&txs[2], batch(9));
        put(&txs[0], Message::Barrier(1));
        put(&txs[1], Message::Barrier(1));
        assert!(matches!(next(&mut inputs), Event::Watermark(30)), "the second input's watermark is the lowest");
        assert!(matches!(next(&mut inputs), Event::Barrier(1)), "the second input's batch waits behind its barrier");
        assert!(matches!(next(&mut inputs), Event::Batch(b, 1, 1) if b == [9]));
    }

    fn put(tx: &Sender<Message>, msg: Message) {
        tx.try_send(msg).expect("room in the channel");
    }

    /// Fills a channel as its producer would, until a send would block.
    fn fill(tx: &Sender<Message>, tag: u8) {
        while tx.try_send(batch(tag)).is_ok() {}
    }

    fn next(inputs: &mut Inputs) -> Event {
        inputs.next(&Cancel::default()).expect("an event")
    }

    fn expect_batch(inputs: &mut Inputs, tag: u8) {
        match next(inputs) {
            Event::Batch(b, 1, _) if b == [tag] => {}
            e => panic!("expected batch {tag}, got {e:?}"),
        }
    }

    /// The end of every input: the final watermark (event time ends), then the end.
    fn expect_end(inputs: &mut Inputs) {
        assert!(matches!(next(inputs), Event::Watermark(i64::MAX)));
        assert!(matches!(next(inputs), Event::End));
    }

    #[test]
    fn a_held_input_is_not_read_until_the_barrier_is_aligned() {
        let (txs, mut inputs) = inputs(2);
        put(&txs[0], Message::Barrier(1));
        fill(&txs[0], 0);
        put(&txs[1], batch(1));
        put(&txs[1], Message::Barrier(1));
        put(&txs[1], Message::End);
        // Input 0's batches after its barrier wait, however many there are.
        expect_batch(&mut inputs, 1);
        assert!(matches!(next(&mut inputs), Event::Barrier(1)));
        for _ in 0..CHANNEL_CAPACITY - 1 {
            expect_batch(&mut inputs, 0);
        }
        put(&txs[0], Message::End);
        expect_end(&mut inputs);
    }

    #[test]
    fn an_input_ending_mid_alignment_aligns_over_the_others() {
        let (txs, mut inputs) = inputs(3);
        put(&txs[0], Message::Barrier(1));
        put(&txs[0], batch(0));
        put(&txs[0], Message::End);
        put(&txs[1], Message::End);
        put(&txs[2], Message::Barrier(1));
        put(&txs[2], Message::End);
        assert!(matches!(next(&mut inputs), Event::Barrier(1)));
        expect_batch(&mut inputs, 0);
        expect_end(&mut inputs);
        assert!(matches!(next(&mut inputs), Event::End), "ended for good");
    }

    /// Cancellation is channel plumbing, not an alignment decision: a subtask waiting
    /// for its other inputs sees the cancel flag at its next poll, and so does the held
    /// input's producer, blocked on its full channel. (The flag is set before the wait
    /// so the test needs no second thread; the wait polls it all the same.) Two inputs
    /// wait on one channel, three on a select.
    #[test]
    fn a_cancel_while_held_stops_the_consumer_and_the_blocked_producer() {
        for n in [2, 3] {
            let (txs, mut inputs) = inputs(n);
            let cancel = Cancel::default();
            put(&txs[0], Message::Barrier(1));
            cancel.cancel();
            assert!(matches!(inputs.next(&cancel), Err(TaskError::Cancelled)), "{n} inputs");
            assert!(inputs.alignment.is_blocked(0), "{n} inputs");
            fill(&txs[0], 0);
            assert!(matches!(send(&txs[0], batch(0), &cancel), Err(TaskError::Cancelled)), "{n} inputs");
        }
    }

    #[test]
    fn an_abandoned_producer_stops_a_subtask_mid_alignment() {
        let (txs, mut inputs) = inputs(2);
        put(&txs[0], Message::Barrier(1));
        put(&txs[1], Message::Abandoned);
        assert!(matches!(inputs.next(&Cancel::default()), Err(TaskError::Cancelled)));
    }

    #[test]
    fn a_vanished_producer_stops_a_subtask_mid_alignment() {
        let (mut txs, mut inputs) = inputs(2);
        put(&txs[0], Message::Barrier(1));
        drop(txs.pop());
        assert!(matches!(inputs.next(&Cancel::default()), Err(TaskError::Cancelled)));
    }

    #[test]
    fn a_broken_input_fails_a_subtask_mid_alignment() {
        let (txs, mut inputs) = inputs(3);
        put(&txs[0], Message::Barrier(1));
        put(&txs[2], Message::Failed(ExchangeError::Input { peer: "taskmanager-2".into(), source: InputError::Empty }));
        let failed = inputs.next(&Cancel::default());
        assert!(matches!(failed, Err(TaskError::Exchange(ExchangeError::Input { source: InputError::Empty, .. }))), "{failed:?}");
    }

    #[test]
    fn a_newer_barrier_releases_inputs_held_for_an_older_one() {
        let (txs, mut inputs) = inputs(2);
        put(&txs[0], Message::Barrier(3));
        put(&txs[0], batch(0));
        put(&txs[0], Message::Barrier(4));
        put(&txs[1], Message::Barrier(4));
        // Input 0 is held at 3 until input 1's barrier 4 supersedes checkpoint 3;
        // input 0's batch then precedes the aligned barrier 4.
        expect_batch(&mut inputs, 0);
        assert!(matches!(next(&mut inputs), Event::Barrier(4)));
    }

    /// Watermarks from several producers come out as their minimum once it moves, an
    /// idle producer stops holding it back, and the last end releases the end of time
    /// before the end itself.
    #[test]
    fn inputs_combine_watermarks_and_end_with_the_end_of_time() {
        let (txs, mut inputs) = self::inputs(2);
        put(&txs[0], Message::Watermark(10));
        put(&txs[1], Message::Watermark(5));
        put(&txs[1], batch(1));
        put(&txs[1], Message::Watermark(20));
        assert!(matches!(next(&mut inputs), Event::Watermark(5)));
        expect_batch(&mut inputs, 1);
        assert!(matches!(next(&mut inputs), Event::Watermark(10)));
        put(&txs[0], Message::Idle(true));
        assert!(matches!(next(&mut inputs), Event::Watermark(20)), "the idle input no longer counts");
        put(&txs[1], Message::Watermark(i64::MAX));
        put(&txs[1], Message::End);
        assert!(matches!(next(&mut inputs), Event::Watermark(i64::MAX)));
        assert!(matches!(next(&mut inputs), Event::Idle(true)), "only the idle input is left");
        put(&txs[0], Message::End);
        assert!(matches!(next(&mut inputs), Event::End));
        let (txs, mut one) = self::inputs(1);
        put(&txs[0], Message::End);
        assert!(matches!(next(&mut one), Event::Watermark(i64::MAX)), "an end without a final watermark still fires everything");
        assert!(matches!(next(&mut one), Event::End));
    }

    #[test]
    fn a_deadline_ends_the_wait() {
        for n in [1, 2] {
            let (_txs, mut inputs) = inputs(n);
            let soon = Instant::now() + std::time::Duration::from_millis(20);
            assert!(matches!(inputs.next_until(&Cancel::default(), Some(soon)), Ok(Event::Timeout)), "{n} inputs");
        }
    }

    #[test]
    fn no_inputs_end_at_once() {
        let (_, mut inputs) = inputs(0);
        assert!(matches!(next(&mut inputs), Event::End));
    }
}
