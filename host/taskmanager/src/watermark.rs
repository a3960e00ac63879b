//! Event time as a pure decision: what a subtask's watermark is, given what each of its
//! inputs says. One mechanism serves both places watermarks are combined: a source
//! subtask over its splits (each split's [`BoundedOutOfOrderness`] generator is an
//! input) and any subtask over its input channels (each producer's watermark messages
//! are an input). As Flink's `StatusWatermarkValve`:
//!
//! - The output watermark is the minimum over the active inputs. It never moves
//!   backwards.
//! - An idle input does not hold the watermark back. When every input that has not
//!   ended is idle, the output goes idle too (downstream then ignores it the same way).
//! - An input that wakes up again counts at once, from the output watermark: it cannot
//!   pull the output back, and it holds it there until its own watermark passes it.
//!   Flink's valve instead ignores a woken input until it caught up, which lets the
//!   other inputs push the output past records the woken one is still sending; here
//!   nothing an input sends after it woke up is late unless its own bound says so.
//!   The cost: a woken input far behind holds the output until it caught up.
//! - An ended input no longer counts. When every input ended, the output is the final
//!   watermark [`END_OF_TIME`], which fires everything.
//!
//! A watermark `w` promises that no more records with a timestamp `<= w` follow
//! (Flink's convention): a window `[start, end)` fires once the watermark reaches
//! `end - 1`.

use weir_types::plan::WatermarkStrategy;

/// The watermark before any: nothing is promised yet.
pub const BEFORE_TIME: i64 = i64::MIN;
/// The final watermark of an input that ended: every timer and window fires.
pub const END_OF_TIME: i64 = i64::MAX;

/// What a subtask forwards downstream after an input changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The output watermark advanced to this.
    Watermark(i64),
    /// Every input that has not ended is idle: downstream may ignore this producer.
    Idle,
    /// Some input is active again after the output went idle.
    Active,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    watermark: i64,
    idle: bool,
    ended: bool,
}

impl Input {
    /// Holds the output back.
    fn counts(&self) -> bool {
        !self.idle && !self.ended
    }
}

/// The watermark state of a subtask over `n` inputs (splits or channels).
#[derive(Debug, Clone)]
pub struct Valve {
    inputs: Vec<Input>,
    output: i64,
    idle: bool,
}

impl Valve {
    /// A valve over `inputs` inputs, all active with no watermark yet.
    pub fn new(inputs: usize) -> Self {
        let input = Input { watermark: BEFORE_TIME, idle: false, ended: false };
        Self { inputs: vec![input; inputs], output: BEFORE_TIME, idle: false }
    }

    /// The output watermark so far.
    pub fn current(&self) -> i64 {
        self.output
    }

    /// True while every input that has not ended is idle.
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// `input` promises nothing at or before `watermark` follows. A watermark lower
    /// than one the input sent before changes nothing (inputs are monotonic; a split
    /// restored from a checkpoint may repeat itself). It also wakes an idle input.
    pub fn watermark(&mut self, input: usize, watermark: i64) -> Vec<Emit> {
        let mut emits = self.wake(input);
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.ended) else { return emits };
        i.watermark = i.watermark.max(watermark);
        emits.extend(self.advance());
        emits
    }

    /// A new input, counting from `watermark` (at least the current output).
    pub fn add(&mut self, watermark: i64) {
        self.inputs.push(Input { watermark: watermark.max(self.output), idle: false, ended: false });
    }

    /// `input` has been silent past its idleness timeout.
    pub fn idle(&mut self, input: usize) -> Vec<Emit> {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.ended && !i.idle) else { return Vec::new() };
        i.idle = true;
        self.settle()
    }

    /// `input` is active again (a record arrived): it holds the output where it is
    /// until its own watermark passes it.
    pub fn wake(&mut self, input: usize) -> Vec<Emit> {
        let output = self.output;
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.ended && i.idle) else { return Vec::new() };
        i.idle = false;
        i.watermark = i.watermark.max(output);
        if self.idle {
            self.idle = false;
            return vec![Emit::Active];
        }
        Vec::new()
    }

    /// `input` ended: it never holds the watermark back again.
    pub fn end(&mut self, input: usize) -> Vec<Emit> {
        let Some(i) = self.inputs.get_mut(input).filter(|i| !i.ended) else { return Vec::new() };
        i.ended = true;
        self.settle()
    }

    /// After an input left the minimum (idle or ended): the final watermark when all
    /// ended, idleness when the rest are idle, or a minimum that may have advanced.
    fn settle(&mut self) -> Vec<Emit> {
        if self.inputs.iter().all(|i| i.ended) {
            return self.raise(END_OF_TIME).into_iter().collect();
        }
        if self.inputs.iter().all(|i| i.ended || i.idle) {
            if self.idle {
                return Vec::new();
            }
            self.idle = true;
            return vec![Emit::Idle];
        }
        self.advance().into_iter().collect()
    }

    /// The minimum over the active inputs, if it moved the output forward.
    fn advance(&mut self) -> Option<Emit> {
        let min = self.inputs.iter().filter(|i| i.counts()).map(|i| i.watermark).min()?;
        self.raise(min)
    }

    fn raise(&mut self, to: i64) -> Option<Emit> {
        (to > self.output).then(|| {
            self.output = to;
            Emit::Watermark(to)
        })
    }
}

/// Flink's bounded out-of-orderness strategy for one split: records may arrive up to
/// `bound` ms later than the newest timestamp seen, so the watermark trails it by that
/// much. Idleness is measured in processing time passed in by the caller, so tests
/// drive it with a clock of their own.
#[derive(Debug, Clone)]
pub struct BoundedOutOfOrderness {
    bound: i64,
    idle_after: Option<u64>,
    max_ts: Option<i64>,
    last_record_ms: u64,
    idle: bool,
}

impl BoundedOutOfOrderness {
    /// A generator tolerating `bound` ms of disorder, idle after `idle_after` ms
    /// without records (never, if `None`), starting at processing time `now_ms`.
    pub fn new(bound: u64, idle_after: Option<u64>, now_ms: u64) -> Self {
        let bound = i64::try_from(bound).unwrap_or(i64::MAX);
        Self { bound, idle_after, max_ts: None, last_record_ms: now_ms, idle: false }
    }

    /// The generator a plan's strategy asks for, starting at processing time `now_ms`.
    pub fn for_strategy(w: &WatermarkStrategy, now_ms: u64) -> Self {
        Self::new(w.out_of_orderness_ms, w.idle_timeout_ms, now_ms)
    }

    /// Every record of a valid plain batch was read at processing time `now_ms`.
    pub fn batch(&mut self, batch: &[u8], now_ms: u64) {
        for r in weir_types::batch::records(batch).flatten() {
            self.record(r.ts, now_ms);
        }
    }

    /// A record with event time `ts` was read at processing time `now_ms`.
    pub fn record(&mut self, ts: i64, now_ms: u64) {
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        self.last_record_ms = now_ms;
        self.idle = false;
    }

    /// The watermark: the newest timestamp seen, less the bound, less one (a record
    /// exactly `bound` behind the newest is still on time).
    pub fn current(&self) -> i64 {
        self.max_ts.map_or(BEFORE_TIME, |m| m.saturating_sub(self.bound).saturating_sub(1))
    }

    /// True once the split has been silent for its idleness timeout at `now_ms`.
    pub fn is_idle(&mut self, now_ms: u64) -> bool {
        if let Some(after) = self.idle_after
            && now_ms.saturating_sub(self.last_record_ms) >= after
        {
            self.idle = true;
        }
        self.idle
    }
}

/// A source subtask's event time over its splits: one [`BoundedOutOfOrderness`]
/// generator per split, combined by a [`Valve`] with one input per split, so splits and
/// input channels follow the same rules. Processing time is passed in.
///
/// A split goes idle only when the source was asked for it and had nothing (a read of
/// no records) and it has had no records for the idle timeout. Time alone is not
/// enough: a subtask blocked by backpressure, or a finite source that reads its splits
/// one after another, leaves splits unread that are not silent at all, and calling
/// them idle would let the watermark pass records they still hold.
#[derive(Debug, Clone)]
pub struct SplitWatermarks {
    generators: Vec<BoundedOutOfOrderness>,
    valve: Valve,
}

impl SplitWatermarks {
    /// Watermarks over `splits` splits under `strategy`, starting at `now_ms`. Every
    /// split holds the watermark back from the start, also one not read yet: what it
    /// will read is unknown, so it could be anything down to [`BEFORE_TIME`].
    pub fn new(strategy: &WatermarkStrategy, splits: usize, now_ms: u64) -> Self {
        Self { generators: vec![BoundedOutOfOrderness::for_strategy(strategy, now_ms); splits], valve: Valve::new(splits) }
    }

    /// The subtask's watermark so far.
    pub fn current(&self) -> i64 {
        self.valve.current()
    }

    /// Records of `split` were read and are about to go downstream: an idle split is
    /// active again first, so downstream hears it before its records.
    pub fn wake(&mut self, split: usize) -> Vec<Emit> {
        self.valve.wake(split)
    }

    /// `batch`, a valid plain batch, was read from `split` at `now_ms` (after
    /// [`wake`](Self::wake)): the split's generator looks at each record once.
    pub fn batch(&mut self, split: usize, batch: &[u8], now_ms: u64) -> Vec<Emit> {
        let Some(g) = self.generators.get_mut(split) else { return Vec::new() };
        g.batch(batch, now_ms);
        let w = g.current();
        self.valve.watermark(split, w)
    }

    /// The source was asked for `split` at `now_ms` and had nothing: past its idle
    /// timeout, the split stops holding the watermark back.
    pub fn silent(&mut self, split: usize, now_ms: u64) -> Vec<Emit> {
        let idle = self.generators.get_mut(split).is_some_and(|g| g.is_idle(now_ms));
        if idle { self.valve.idle(split) } else { Vec::new() }
    }

    /// `split` ended: it leaves the minimum.
    pub fn end(&mut self, split: usize) -> Vec<Emit> {
        self.valve.end(split)
    }

    /// The source now has `splits` splits (discovery added some): each new one counts
    /// from the current watermark, as a split waking up does, so it cannot pull it back.
    pub fn grow(&mut self, splits: usize, now_ms: u64) {
        while self.generators.len() < splits {
            let Some(first) = self.generators.first() else { return };
            let g = BoundedOutOfOrderness { max_ts: None, last_record_ms: now_ms, idle: false, ..first.clone() };
            self.generators.push(g);
            self.valve.add(self.valve.current());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_is_the_minimum_and_never_goes_back() {
        let mut v = Valve::new(2);
        assert_eq!(v.watermark(0, 10), [], "input 1 has promised nothing yet");
        assert_eq!(v.watermark(1, 5), [Emit::Watermark(5)]);
        assert_eq!(v.watermark(1, 20), [Emit::Watermark(10)]);
        assert_eq!(v.watermark(1, 3), [], "an input going back changes nothing");
        assert_eq!(v.watermark(0, 8), [], "nor does one repeating an older watermark");
        assert_eq!(v.current(), 10);
    }

    #[test]
    fn an_idle_input_does_not_hold_the_watermark_back() {
        let mut v = Valve::new(2);
        v.watermark(0, 100);
        assert_eq!(v.watermark(1, 50), [Emit::Watermark(50)]);
        assert_eq!(v.idle(1), [Emit::Watermark(100)], "the idle input leaves the minimum");
        assert_eq!(v.watermark(0, 200), [Emit::Watermark(200)]);
        assert!(!v.is_idle());
    }

    #[test]
    fn a_woken_input_behind_the_output_holds_it_until_it_passes_it() {
        let mut v = Valve::new(2);
        v.watermark(0, 100);
        v.watermark(1, 50);
        v.idle(1);
        assert_eq!(v.current(), 100);
        // Wakes up at 60: below the output, so it cannot pull it back to 60...
        assert_eq!(v.watermark(1, 60), []);
        assert_eq!(v.current(), 100);
        // ...but it holds it at 100: its records after 100 must not be late.
        assert_eq!(v.watermark(0, 300), [], "input 1 holds the output where it woke up");
        assert_eq!(v.watermark(1, 210), [Emit::Watermark(210)]);
        assert_eq!(v.watermark(1, 400), [Emit::Watermark(300)], "and from then on the minimum again");
    }

    #[test]
    fn a_woken_input_ahead_of_the_output_counts_at_once() {
        let mut v = Valve::new(2);
        v.watermark(0, 100);
        v.watermark(1, 150);
        v.idle(1);
        v.wake(1);
        assert_eq!(v.watermark(0, 200), [Emit::Watermark(150)], "input 1 holds it at its 150 again");
    }

    #[test]
    fn all_idle_goes_idle_and_the_first_to_wake_makes_it_active() {
        let mut v = Valve::new(2);
        v.watermark(0, 10);
        v.watermark(1, 20);
        assert_eq!(v.idle(0), [Emit::Watermark(20)]);
        assert_eq!(v.idle(1), [Emit::Idle]);
        assert!(v.is_idle());
        assert_eq!(v.idle(1), [], "idle twice is still idle");
        assert_eq!(v.watermark(0, 15), [Emit::Active], "active again, but 15 is behind 20");
        assert_eq!(v.current(), 20);
        assert_eq!(v.watermark(0, 25), [Emit::Watermark(25)]);
    }

    #[test]
    fn ended_inputs_leave_and_the_last_end_fires_everything() {
        let mut v = Valve::new(3);
        v.watermark(0, 10);
        v.watermark(1, 20);
        v.watermark(2, 30);
        assert_eq!(v.end(0), [Emit::Watermark(20)]);
        assert_eq!(v.watermark(0, 1000), [], "an ended input says nothing more");
        assert_eq!(v.idle(1), [Emit::Watermark(30)]);
        assert_eq!(v.end(2), [Emit::Idle], "only an idle input is left");
        assert_eq!(v.end(1), [Emit::Watermark(END_OF_TIME)]);
        assert_eq!(v.end(1), []);
    }

    #[test]
    fn no_inputs_is_the_end_of_time_once_settled() {
        let mut v = Valve::new(1);
        assert_eq!(v.end(0), [Emit::Watermark(END_OF_TIME)]);
        let mut v = Valve::new(2);
        assert_eq!(v.watermark(7, 10), [], "an unknown input is ignored");
    }

    /// Every interleaving of two inputs' watermark sequences yields a monotonic output
    /// that never exceeds the minimum of what the inputs promised.
    #[test]
    fn interleavings_never_overtake_any_active_input() {
        let a = [3, 7, 7, 12, 20];
        let b = [1, 9, 10, 25, 26];
        for mask in 0u32..(1 << (a.len() + b.len())) {
            if mask.count_ones() as usize != a.len() {
                continue;
            }
            let (mut ia, mut ib, mut v) = (0, 0, Valve::new(2));
            let (mut last, mut seen) = (BEFORE_TIME, [BEFORE_TIME; 2]);
            for step in 0..a.len() + b.len() {
                let (input, w) = if mask & (1 << step) != 0 {
                    ia += 1;
                    (0, a[ia - 1])
                } else {
                    ib += 1;
                    (1, b[ib - 1])
                };
                seen[input] = seen[input].max(w);
                for e in v.watermark(input, w) {
                    let Emit::Watermark(out) = e else { panic!("no idleness here: {e:?}") };
                    assert!(out > last && out <= seen[0].min(seen[1]), "{out} after {last}, inputs at {seen:?}");
                    last = out;
                }
            }
            assert_eq!(v.current(), 20);
        }
    }

    #[test]
    fn bounded_out_of_orderness_trails_the_newest_timestamp() {
        let mut g = BoundedOutOfOrderness::new(5000, None, 0);
        assert_eq!(g.current(), BEFORE_TIME);
        g.record(60_000, 1);
        g.record(58_000, 2);
        assert_eq!(g.current(), 54_999, "a record at 55000 is still on time");
        g.record(i64::MIN, 3);
        assert_eq!(g.current(), 54_999);
        assert!(!g.is_idle(1_000_000), "no idleness configured");
    }

    #[test]
    fn a_split_goes_idle_after_its_timeout_without_records() {
        let mut g = BoundedOutOfOrderness::new(0, Some(100), 1000);
        assert!(!g.is_idle(1099));
        assert!(g.is_idle(1100));
        g.record(5, 1150);
        assert!(!g.is_idle(1249), "a record wakes it");
        assert!(g.is_idle(1250));
    }
}
