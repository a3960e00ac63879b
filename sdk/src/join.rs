//! Joins of two keyed streams (issue 15), each a [`KeyedCoProcessFunction`] over
//! `connect`: a key's rows of both inputs are its value state, and event-time timers
//! end what may no longer match.
//!
//! - **Regular equi-join** ([`JoinedStreams::inner`], `left_outer`, `full_outer`): every
//!   row stays in its key's state; a pair is emitted when its second row arrives, with
//!   that row's timestamp. Outer rows without a match come out once, as `(row, None)`,
//!   when the watermark reaches the end of time (the end of a bounded input), at the
//!   row's own timestamp: a row that ever matched never does. Weir has no retractions,
//!   so this is the one exact, deterministic choice: for bounded inputs the output is the
//!   SQL join's as a multiset, whatever the interleaving; on an unbounded input unmatched
//!   rows wait. State retention (TTL, being built in the host) will plug in at
//!   [`RegularJoin::row_deadline`]: a row that expires can no longer match, so an outer
//!   row would come out then.
//! - **Interval join** ([`IntervalJoin`], Flink's): left `a` and right `b` of a key meet
//!   if `b.ts` is in `[a.ts + lower, a.ts + upper]`; the pair carries the later of the two
//!   timestamps. A row is dropped once the watermark passes the last time a row of the
//!   other side could still match it (`a.ts + upper`, `b.ts - lower`), by a timer; late
//!   rows (at or behind the watermark) are dropped, as Flink does.
//! - **Window join** ([`WindowJoin`], Flink's `join(..).where(..).equalTo(..).window(..)`):
//!   rows of a key in the same window (tumbling or sliding) meet when the window fires at
//!   its last instant; every pair `(l, r)` of the window goes to the function. Late rows
//!   (whose window already fired) are dropped.

use core::marker::PhantomData;

use serde::{Deserialize, Serialize};

use crate::Data;
use crate::KeyedCoProcessFunction;
use crate::emit::Emitter;
use crate::job::{KeyedStream, Stream};
use crate::time::Timer;
use crate::timers::TimerContext;
use crate::window::{Window, Windows};

/// Two keyed streams with the same key type, to be joined (`KeyedStream::join`):
/// regularly ([`inner`](Self::inner), [`left_outer`](Self::left_outer),
/// [`full_outer`](Self::full_outer)) or by window ([`window`](Self::window)).
pub struct JoinedStreams<K, L, R> {
    pub(crate) left: KeyedStream<K, L>,
    pub(crate) right: KeyedStream<K, R>,
}

impl<K: Data, L: Data + Clone, R: Data + Clone> JoinedStreams<K, L, R> {
    /// Inner equi-join: every `(l, r)` of a key, emitted as soon as both arrived.
    pub fn inner(self, uid: &str) -> Stream<K, (L, R)> {
        let join = RegularJoin { pair: |l: &L, r: &R| (l.clone(), r.clone()), left_alone: None, right_alone: None };
        self.left.connect(self.right).process(uid, join)
    }

    /// Left outer equi-join: the inner join's pairs as `(l, Some(r))`, and each left row
    /// that never matched as `(l, None)` at the end of input (see the module).
    pub fn left_outer(self, uid: &str) -> Stream<K, (L, Option<R>)> {
        let join = RegularJoin { pair: |l: &L, r: &R| (l.clone(), Some(r.clone())), left_alone: Some(|l: &L| (l.clone(), None)), right_alone: None };
        self.left.connect(self.right).process(uid, join)
    }

    /// Full outer equi-join: pairs as `(Some(l), Some(r))`, rows of either side that
    /// never matched as `(Some(l), None)` / `(None, Some(r))` at the end of input.
    pub fn full_outer(self, uid: &str) -> Stream<K, (Option<L>, Option<R>)> {
        let join = RegularJoin {
            pair: |l: &L, r: &R| (Some(l.clone()), Some(r.clone())),
            left_alone: Some(|l: &L| (Some(l.clone()), None)),
            right_alone: Some(|r: &R| (None, Some(r.clone()))),
        };
        self.left.connect(self.right).process(uid, join)
    }

    /// A window join in event time: rows of a key in the same window meet when it
    /// fires. Finish with [`WindowJoin::apply`].
    pub fn window(self, windows: Windows) -> WindowJoin<K, L, R> {
        WindowJoin { joined: self, windows }
    }
}

/// A key's rows of a regular join: `(timestamp, row, matched)` per side.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize, R: Serialize", deserialize = "L: Data, R: Data"))]
pub(crate) struct Rows<L, R> {
    left: Vec<(i64, L, bool)>,
    right: Vec<(i64, R, bool)>,
}

/// The regular join's function: the output of a pair, and of an unmatched row of a side
/// an outer join keeps (`None`: the side's unmatched rows are not emitted), so the three
/// joins are one operator.
pub(crate) struct RegularJoin<L, R, W> {
    pair: fn(&L, &R) -> W,
    left_alone: Option<fn(&L) -> W>,
    right_alone: Option<fn(&R) -> W>,
}

/// Meets a new row `mine` with the other side's `rows` (the pair's output made by
/// `pair`), marking them matched; true if any was there.
fn meet<A, B, W: Serialize + 'static>(mine: &A, rows: &mut [(i64, B, bool)], pair: impl Fn(&A, &B) -> W, out: &mut Emitter<'_, W>) -> bool {
    for (_, other, matched) in rows.iter_mut() {
        out.emit_ref(&pair(mine, other));
        *matched = true;
    }
    !rows.is_empty()
}

/// Emits the rows of one side that never matched and can no longer (deadline at or
/// before `now`), each at its own timestamp.
fn emit_alone<T, W: Serialize + 'static>(rows: &[(i64, T, bool)], alone: Option<fn(&T) -> W>, due: impl Fn(i64) -> bool, out: &mut Emitter<'_, W>) {
    let Some(alone) = alone else { return };
    for (ts, row, _) in rows.iter().filter(|(ts, _, matched)| !matched && due(*ts)) {
        out.emit_at(*ts, &alone(row));
    }
}

impl<L, R, W> RegularJoin<L, R, W> {
    /// When a row at `_ts` can no longer match: never, until state retention (TTL)
    /// bounds it; outer rows without a match are emitted then, and rows dropped.
    pub(crate) fn row_deadline(&self, _ts: i64) -> i64 {
        i64::MAX
    }

    fn is_outer(&self) -> bool {
        self.left_alone.is_some() || self.right_alone.is_some()
    }
}

impl<K: Data, L: Data, R: Data, W: Data> KeyedCoProcessFunction<K, L, R> for RegularJoin<L, R, W> {
    type State = Rows<L, R>;
    type Out = W;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: L, out: &mut Emitter<'_, W>) {
        let ts = ctx.timestamp();
        match ctx.state_mut() {
            Some(rows) => {
                let matched = meet(&value, &mut rows.right, self.pair, out);
                rows.left.push((ts, value, matched));
            }
            None => ctx.set_state(Rows { left: vec![(ts, value, false)], right: Vec::new() }),
        }
        if self.is_outer() {
            ctx.register_event_time_timer(self.row_deadline(ts));
        }
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: R, out: &mut Emitter<'_, W>) {
        let ts = ctx.timestamp();
        let pair = self.pair;
        match ctx.state_mut() {
            Some(rows) => {
                let matched = meet(&value, &mut rows.left, |r, l| pair(l, r), out);
                rows.right.push((ts, value, matched));
            }
            None => ctx.set_state(Rows { left: Vec::new(), right: vec![(ts, value, false)] }),
        }
        if self.is_outer() {
            ctx.register_event_time_timer(self.row_deadline(ts));
        }
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, timer: Timer, out: &mut Emitter<'_, W>) {
        let due = |ts: i64| self.row_deadline(ts) <= timer.ts;
        let Some(rows) = ctx.state() else { return };
        emit_alone(&rows.left, self.left_alone, due, out);
        emit_alone(&rows.right, self.right_alone, due, out);
        if !rows.left.iter().any(|r| due(r.0)) && !rows.right.iter().any(|r| due(r.0)) {
            return;
        }
        let Some(rows) = ctx.state_mut() else { return };
        rows.left.retain(|r| !due(r.0));
        rows.right.retain(|r| !due(r.0));
        if rows.left.is_empty() && rows.right.is_empty() {
            ctx.clear_state();
        }
    }
}

/// Two keyed streams to be joined by time interval (`KeyedStream::interval_join`):
/// finish with [`between`](Self::between) and [`IntervalBounds::process`].
pub struct IntervalJoin<K, L, R> {
    pub(crate) left: KeyedStream<K, L>,
    pub(crate) right: KeyedStream<K, R>,
}

impl<K: Data, L: Data, R: Data> IntervalJoin<K, L, R> {
    /// Joins left `a` with right `b` of the same key when `b.ts` is in
    /// `[a.ts + lower, a.ts + upper]` (ms, both inclusive; `lower <= upper`).
    pub fn between(self, lower: i64, upper: i64) -> IntervalBounds<K, L, R> {
        IntervalBounds { join: self, lower, upper }
    }
}

/// An interval join with its bounds.
pub struct IntervalBounds<K, L, R> {
    join: IntervalJoin<K, L, R>,
    lower: i64,
    upper: i64,
}

/// What an interval join's function sees of a pair besides the rows (Flink's
/// `ProcessJoinFunction.Context`).
pub struct IntervalContext<'a, K> {
    key: &'a K,
    left_ts: i64,
    right_ts: i64,
}

impl<K> IntervalContext<'_, K> {
    /// The key both rows have.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The left row's timestamp.
    pub fn left_timestamp(&self) -> i64 {
        self.left_ts
    }

    /// The right row's timestamp.
    pub fn right_timestamp(&self) -> i64 {
        self.right_ts
    }

    /// The pair's timestamp, which its records carry: the later of the two.
    pub fn timestamp(&self) -> i64 {
        self.left_ts.max(self.right_ts)
    }
}

impl<K: Data, L: Data, R: Data> IntervalBounds<K, L, R> {
    /// Runs `f` on every pair as one keyed operator `uid` (Flink's
    /// `ProcessJoinFunction`); what it emits carries the pair's timestamp and the key.
    /// Bounds with `lower > upper` match nothing and fail the plan.
    pub fn process<W: Data>(self, uid: &str, f: impl FnMut(&L, &R, &IntervalContext<'_, K>, &mut Emitter<'_, W>) + 'static) -> Stream<K, W> {
        let IntervalBounds { join, lower, upper } = self;
        if lower > upper {
            join.left.fail(&format!("interval join {uid:?}: lower bound {lower} is above the upper bound {upper}"));
        }
        join.left.connect(join.right).process(uid, IntervalJoinFn { f, lower, upper, _t: PhantomData })
    }
}

/// A key's rows of an interval join: `(timestamp, row)` per side.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize, R: Serialize", deserialize = "L: Data, R: Data"))]
pub(crate) struct Buffered<L, R> {
    left: Vec<(i64, L)>,
    right: Vec<(i64, R)>,
}

/// The interval join's function: buffers each row until the watermark passes its last
/// possible match, and calls `f` on every pair as its second row arrives.
pub(crate) struct IntervalJoinFn<K, L, R, W, F> {
    f: F,
    lower: i64,
    upper: i64,
    _t: PhantomData<fn(K, L, R) -> W>,
}

impl<K, L, R, W, F> IntervalJoinFn<K, L, R, W, F> {
    /// After this watermark no right row can match a left row at `ts` (Flink's: never
    /// before the row's own time, so a row never leaves before it is past).
    fn left_end(&self, ts: i64) -> i64 {
        ts.saturating_add(self.upper.max(0))
    }

    /// After this watermark no left row can match a right row at `ts`.
    fn right_end(&self, ts: i64) -> i64 {
        ts.saturating_add(self.lower.saturating_neg().max(0))
    }

    /// True if left at `left_ts` and right at `right_ts` meet.
    fn meets(lower: i64, upper: i64) -> impl Fn(i64, i64) -> bool {
        move |left_ts, right_ts| right_ts >= left_ts.saturating_add(lower) && right_ts <= left_ts.saturating_add(upper)
    }
}

impl<K, L, R, W, F> KeyedCoProcessFunction<K, L, R> for IntervalJoinFn<K, L, R, W, F>
where
    K: Data,
    L: Data,
    R: Data,
    W: Data,
    F: FnMut(&L, &R, &IntervalContext<'_, K>, &mut Emitter<'_, W>) + 'static,
{
    type State = Buffered<L, R>;
    type Out = W;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: L, out: &mut Emitter<'_, W>) {
        let ts = ctx.timestamp();
        if ts <= ctx.current_watermark() {
            return;
        }
        let meets = Self::meets(self.lower, self.upper);
        if let Some(rows) = ctx.state() {
            for (rts, r) in rows.right.iter().filter(|(rts, _)| meets(ts, *rts)) {
                let pair = IntervalContext { key: ctx.key(), left_ts: ts, right_ts: *rts };
                out.set_ts(pair.timestamp());
                (self.f)(&value, r, &pair, out);
            }
            out.set_ts(ts);
        }
        let end = self.left_end(ts);
        match ctx.state_mut() {
            Some(rows) => rows.left.push((ts, value)),
            None => ctx.set_state(Buffered { left: vec![(ts, value)], right: Vec::new() }),
        }
        ctx.register_event_time_timer(end);
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: R, out: &mut Emitter<'_, W>) {
        let ts = ctx.timestamp();
        if ts <= ctx.current_watermark() {
            return;
        }
        let meets = Self::meets(self.lower, self.upper);
        if let Some(rows) = ctx.state() {
            for (lts, l) in rows.left.iter().filter(|(lts, _)| meets(*lts, ts)) {
                let pair = IntervalContext { key: ctx.key(), left_ts: *lts, right_ts: ts };
                out.set_ts(pair.timestamp());
                (self.f)(l, &value, &pair, out);
            }
            out.set_ts(ts);
        }
        let end = self.right_end(ts);
        match ctx.state_mut() {
            Some(rows) => rows.right.push((ts, value)),
            None => ctx.set_state(Buffered { left: Vec::new(), right: vec![(ts, value)] }),
        }
        ctx.register_event_time_timer(end);
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, timer: Timer, _out: &mut Emitter<'_, W>) {
        let (left_end, right_end) = (|ts| self.left_end(ts), |ts| self.right_end(ts));
        let Some(rows) = ctx.state_mut() else { return };
        rows.left.retain(|(ts, _)| left_end(*ts) > timer.ts);
        rows.right.retain(|(ts, _)| right_end(*ts) > timer.ts);
        if rows.left.is_empty() && rows.right.is_empty() {
            ctx.clear_state();
        }
    }
}

/// A window join waiting for its function ([`JoinedStreams::window`]).
pub struct WindowJoin<K, L, R> {
    joined: JoinedStreams<K, L, R>,
    windows: Windows,
}

impl<K: Data, L: Data + Clone, R: Data + Clone> WindowJoin<K, L, R> {
    /// Runs `f` on every pair of left and right rows of a key in the same window, when
    /// the window fires, as one keyed operator `uid` (Flink's `JoinFunction`, given the
    /// window too); results carry the window's last instant. Session windows are not
    /// supported (the plan fails).
    pub fn apply<W: Data>(self, uid: &str, f: impl FnMut(Window, &L, &R) -> W + 'static) -> Stream<K, W> {
        let WindowJoin { joined, windows } = self;
        if windows.merges() {
            joined.left.fail(&format!("window join {uid:?}: session windows are not supported"));
        } else if let Err(e) = windows.check() {
            joined.left.fail(&format!("window join {uid:?}: {e}"));
        }
        joined.left.connect(joined.right).process(uid, WindowJoinFn { f, windows, assigned: Vec::new(), _t: PhantomData })
    }
}

/// A key's open windows of a window join, each with its rows of both sides.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize, R: Serialize", deserialize = "L: Data, R: Data"))]
pub(crate) struct Panes<L, R> {
    panes: Vec<(Window, Vec<L>, Vec<R>)>,
}

/// The window join's function: each row goes into its key's panes, and a pane is
/// crossed and dropped when its window fires.
pub(crate) struct WindowJoinFn<L, R, F> {
    f: F,
    windows: Windows,
    /// Scratch for the windows of one row.
    assigned: Vec<Window>,
    _t: PhantomData<fn(L, R)>,
}

impl<L: Data + Clone, R: Data + Clone, F> WindowJoinFn<L, R, F> {
    fn add<K>(&mut self, ctx: &mut TimerContext<'_, K, Panes<L, R>>, left: Option<L>, right: Option<R>) {
        let ts = ctx.timestamp();
        let watermark = ctx.current_watermark();
        self.assigned.clear();
        self.windows.assign(ts, &mut self.assigned);
        for w in &self.assigned {
            if w.max_timestamp() <= watermark {
                continue;
            }
            if ctx.state().is_none() {
                ctx.set_state(Panes { panes: Vec::new() });
            }
            let Some(state) = ctx.state_mut() else { return };
            let index = match state.panes.iter().position(|(pw, _, _)| pw == w) {
                Some(i) => i,
                None => {
                    state.panes.push((*w, Vec::new(), Vec::new()));
                    state.panes.len() - 1
                }
            };
            if let Some((_, ls, rs)) = state.panes.get_mut(index) {
                ls.extend(left.iter().cloned());
                rs.extend(right.iter().cloned());
            }
            ctx.register_event_time_timer(w.max_timestamp());
        }
    }
}

impl<K, L, R, W, F> KeyedCoProcessFunction<K, L, R> for WindowJoinFn<L, R, F>
where
    K: Data,
    L: Data + Clone,
    R: Data + Clone,
    W: Data,
    F: FnMut(Window, &L, &R) -> W + 'static,
{
    type State = Panes<L, R>;
    type Out = W;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: L, _out: &mut Emitter<'_, W>) {
        self.add(ctx, Some(value), None);
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: R, _out: &mut Emitter<'_, W>) {
        self.add(ctx, None, Some(value));
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, timer: Timer, out: &mut Emitter<'_, W>) {
        let Some(state) = ctx.state_mut() else { return };
        let (due, open): (Vec<_>, Vec<_>) = core::mem::take(&mut state.panes).into_iter().partition(|(w, _, _)| w.max_timestamp() <= timer.ts);
        state.panes = open;
        for (w, ls, rs) in &due {
            for l in ls {
                for r in rs {
                    out.emit_at(w.max_timestamp(), &(self.f)(*w, l, r));
                }
            }
        }
        if state.panes.is_empty() {
            ctx.clear_state();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Serialize;
    use weir_batch::{TimeDomain, push_u32};

    use super::*;
    use crate::codec::build::*;
    use crate::connect::with_clock;
    use crate::ops::Operator;
    use crate::time::TestClock;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    /// A keyed batch of input `input` (0 left, 1 right): one key with `state`, records
    /// `(ts, value)`.
    fn batch(key: &[u8], state: Option<&[u8]>, input: u32, records: &[(i64, u64)]) -> Vec<u8> {
        let values: Vec<(u32, i64, Vec<u8>)> = records.iter().map(|(ts, v)| (0, *ts, enc(v))).collect();
        let refs: Vec<(u32, i64, &[u8])> = values.iter().map(|(k, ts, v)| (*k, *ts, v.as_slice())).collect();
        let mut b = keyed(&[(key, state)], &refs);
        push_u32(&mut b, input);
        b
    }

    /// An interval join of `u64` rows by `u32` keys emitting `(l, r)`, on `clock`.
    fn interval(lower: i64, upper: i64, clock: std::rc::Rc<TestClock>) -> impl Operator {
        let f = |l: &u64, r: &u64, _: &IntervalContext<'_, u32>, out: &mut Emitter<'_, (u64, u64)>| out.emit((*l, *r));
        with_clock::<u32, u64, u64, _>(IntervalJoinFn { f, lower, upper, _t: PhantomData }, clock)
    }

    /// The state of an interval join's key: `(ts, row)` of each side.
    type Sides = (Vec<(i64, u64)>, Vec<(i64, u64)>);

    #[test]
    fn an_interval_join_drops_rows_once_the_watermark_passes_their_last_match() {
        let clock = TestClock::at(0);
        let mut op = interval(-5, 10, clock.clone());
        let key = enc(&7u32);
        // Left 1 at 100 can meet right rows in [95, 110]: kept until the watermark is 110.
        let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(100, 1)]), 0).unwrap(), 1);
        assert!(o.records.is_empty());
        let state = enc::<Sides>(&(vec![(100, 1)], vec![]));
        assert_eq!(o.states, [Some(Some(state.clone()))]);
        assert_eq!((o.timers.len(), o.timers[0].ts), (1, 110));
        // Right 2 at 104 meets it (pair at the later time) and can meet left rows up to
        // 109: kept until then. Right 3 at 111 is past the left row's interval.
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state), 1, &[(104, 2), (111, 3)]), 0).unwrap(), 1);
        assert_eq!(o.records, [(104, key.clone(), enc(&(1u64, 2u64)))]);
        let state = enc::<Sides>(&(vec![(100, 1)], vec![(104, 2), (111, 3)]));
        assert_eq!(o.states, [Some(Some(state.clone()))]);
        assert_eq!(o.timers.iter().map(|t| t.ts).collect::<Vec<_>>(), [109, 116]);
        // Watermark 109: right 2 is gone, the left row stays for one more instant.
        clock.watermark.set(109);
        let o = parse_keyed_output(&op.on_timer(&timer_input(&[(&key, Some(&state))], &[(0, 109, TimeDomain::Event)]), 0).unwrap(), 1);
        let state = enc::<Sides>(&(vec![(100, 1)], vec![(111, 3)]));
        assert_eq!(o.states, [Some(Some(state.clone()))]);
        clock.watermark.set(116);
        let fired = timer_input(&[(&key, Some(&state))], &[(0, 110, TimeDomain::Event), (0, 116, TimeDomain::Event)]);
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 1);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [Some(None)], "nothing can match any more: the key's state is gone");
        // A row at or behind the watermark is late: dropped, no state, no timer.
        let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(116, 4), (50, 5)]), 0).unwrap(), 1);
        assert!(o.records.is_empty() && o.timers.is_empty());
        assert_eq!(o.states, [None]);
    }

    #[test]
    fn a_full_outer_join_emits_pairs_at_once_and_unmatched_rows_at_the_end_of_time() {
        let clock = TestClock::at(0);
        let join: RegularJoin<u64, u64, (Option<u64>, Option<u64>)> =
            RegularJoin { pair: |l, r| (Some(*l), Some(*r)), left_alone: Some(|l| (Some(*l), None)), right_alone: Some(|r| (None, Some(*r))) };
        let mut op = with_clock::<u32, u64, u64, _>(join, clock.clone());
        let key = enc(&7u32);
        let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(1, 10), (2, 11)]), 0).unwrap(), 1);
        assert!(o.records.is_empty());
        assert_eq!(o.timers.iter().map(|t| t.ts).collect::<Vec<_>>(), [i64::MAX], "one timer per key: the end of time");
        let state = o.states[0].clone().unwrap().unwrap();
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state), 1, &[(5, 20)]), 0).unwrap(), 1);
        assert_eq!(o.records, [(5, key.clone(), enc(&(Some(10u64), Some(20u64)))), (5, key.clone(), enc(&(Some(11u64), Some(20u64))))]);
        let state = o.states[0].clone().unwrap().unwrap();
        // Another key: one left row that never meets a right one.
        let lone = enc(&8u32);
        let o = parse_keyed_output(&op.process(&batch(&lone, None, 0, &[(3, 12)]), 0).unwrap(), 1);
        let lone_state = o.states[0].clone().unwrap().unwrap();
        let fired =
            timer_input(&[(&key, Some(&state)), (&lone, Some(&lone_state))], &[(0, i64::MAX, TimeDomain::Event), (1, i64::MAX, TimeDomain::Event)]);
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 2);
        assert_eq!(o.records, [(3, lone.clone(), enc(&(Some(12u64), None::<u64>)))], "only the row that never matched, at its own time");
        assert_eq!(o.states, [Some(None), Some(None)]);
        // A right row alone comes out as (None, r).
        let o = parse_keyed_output(&op.process(&batch(&lone, None, 1, &[(4, 21)]), 0).unwrap(), 1);
        let state = o.states[0].clone().unwrap().unwrap();
        let o = parse_keyed_output(&op.on_timer(&timer_input(&[(&lone, Some(&state))], &[(0, i64::MAX, TimeDomain::Event)]), 0).unwrap(), 1);
        assert_eq!(o.records, [(4, lone, enc(&(None::<u64>, Some(21u64))))]);
    }

    #[test]
    fn a_sliding_window_join_pairs_rows_per_shared_window_when_it_fires() {
        let clock = TestClock::at(0);
        let f = WindowJoinFn {
            f: |w: Window, l: &u64, r: &u64| (w.start, *l, *r),
            windows: Windows::sliding(20, 10),
            assigned: Vec::new(),
            _t: PhantomData,
        };
        let mut op = with_clock::<u32, u64, u64, _>(f, clock.clone());
        let key = enc(&7u32);
        // Left at 15: windows [0, 20) and [10, 30); right at 25: [10, 30) and [20, 40).
        let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(15, 1)]), 0).unwrap(), 1);
        let state = o.states[0].clone().unwrap().unwrap();
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state), 1, &[(25, 2)]), 0).unwrap(), 1);
        let state = o.states[0].clone().unwrap().unwrap();
        clock.watermark.set(29);
        let fired = timer_input(&[(&key, Some(&state))], &[(0, 19, TimeDomain::Event), (0, 29, TimeDomain::Event)]);
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 1);
        assert_eq!(o.records, [(29, key.clone(), enc(&(10i64, 1u64, 2u64)))], "only the window both are in");
        // The window [20, 40) is still open; a left row of [0, 20) is late now.
        let state = o.states[0].clone().unwrap().unwrap();
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state), 0, &[(5, 3)]), 0).unwrap(), 1);
        assert_eq!(o.states, [None]);
    }
}
