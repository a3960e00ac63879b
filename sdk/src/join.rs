//! Joins of two keyed streams (issue 15), each a [`KeyedCoProcessFunction`] over
//! `connect`: a key's rows of both inputs are its value state, and event-time timers
//! end what may no longer match.
//!
//! - **Regular equi-join** ([`JoinedStreams::inner`], `left_outer`, `full_outer`): a
//!   key's rows stay in its state; a pair is emitted when its second row arrives, with
//!   that row's timestamp. Weir has no retractions, so an outer join emits a row that
//!   never matched once, as `(row, None)` at the row's own timestamp (behind the
//!   watermark: late for a downstream event-time window), when it can no longer match;
//!   a row that ever matched never comes out alone. When that is:
//!   - **No retention** (default): never before the end of time (the end of a bounded
//!     input). On bounded input the output is the SQL join's as a multiset, whatever the
//!     interleaving; on unbounded input the state grows and unmatched rows wait.
//!   - **Event-time retention** ([`JoinedStreams::retention_ms`], `ms`): rows meet only
//!     if their timestamps are at most `ms` apart (the SQL join with
//!     `abs(l.ts - r.ts) <= ms`). A row's deadline is its timestamp + `ms`
//!     ([`RegularJoin::row_deadline`]): an event-time timer then emits it if it is an
//!     unmatched outer row and drops it. Every row that could still meet it is at or
//!     before that time, so it arrived before the watermark passed it: the output is
//!     exact and deterministic whatever the interleaving and parallelism, and the state
//!     is what the watermark has not passed. Rows at or behind the watermark when they
//!     arrive are late and dropped (rows they should have met may be gone).
//!   - **Processing-time TTL** ([`JoinedStreams::state_ttl`], [`StateTtl`]): each row
//!     expires `ttl` after it arrived (with `update_on_read`: after it was last met by a
//!     row of the other side); an expired row no longer matches and is dropped without
//!     any output, not even by an outer join (there is no event-time moment to emit it
//!     at). The key's value state carries the operator's TTL like any state, so it expires
//!     with its newest row and the host's background sweep removes keys never seen
//!     again: state stays bounded without event time. The output then depends on
//!     processing time, as Flink's idle state retention does. With a retention too, an
//!     outer row comes out at its deadline only if it did not expire before.
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
use crate::ttl::StateTtl;
use crate::window::{Window, Windows};

/// Two keyed streams with the same key type, to be joined (`KeyedStream::join`):
/// regularly ([`inner`](Self::inner), [`left_outer`](Self::left_outer),
/// [`full_outer`](Self::full_outer)), optionally with a retention in event time
/// ([`retention_ms`](Self::retention_ms)) and a state TTL in processing time
/// ([`state_ttl`](Self::state_ttl)), or by window ([`window`](Self::window)).
pub struct JoinedStreams<K, L, R> {
    pub(crate) left: KeyedStream<K, L>,
    pub(crate) right: KeyedStream<K, R>,
    pub(crate) retention: Option<i64>,
    pub(crate) ttl: Option<StateTtl>,
}

impl<K: Data, L: Data + Clone, R: Data + Clone> JoinedStreams<K, L, R> {
    /// Event-time retention of a regular join (see the module): rows meet only if their
    /// timestamps are at most `ms` apart, a row leaves the state when the watermark
    /// reaches its timestamp + `ms`, and an outer join emits a row that never matched
    /// then. Rows at or behind the watermark on arrival are late and dropped.
    pub fn retention_ms(mut self, ms: u64) -> Self {
        self.retention = Some(i64::try_from(ms).unwrap_or(i64::MAX));
        self
    }

    /// Processing-time state TTL of a regular join (see the module): each row lives `ttl`
    /// after it arrived (or was last met, with [`StateTtl::update_on_read`]); an expired
    /// row no longer matches and is never emitted, not even by an outer join.
    pub fn state_ttl(mut self, ttl: StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    fn regular<W: Data>(self, uid: &str, pair: fn(&L, &R) -> W, left_alone: Option<fn(&L) -> W>, right_alone: Option<fn(&R) -> W>) -> Stream<K, W> {
        let JoinedStreams { left, right, retention, ttl } = self;
        let join = RegularJoin { pair, left_alone, right_alone, retention, ttl };
        let connected = left.connect(right);
        let connected = match ttl {
            Some(ttl) => connected.state_ttl(ttl),
            None => connected,
        };
        connected.process(uid, join)
    }

    /// Inner equi-join: every `(l, r)` of a key, emitted as soon as both arrived.
    pub fn inner(self, uid: &str) -> Stream<K, (L, R)> {
        self.regular(uid, |l, r| (l.clone(), r.clone()), None, None)
    }

    /// Left outer equi-join: the inner join's pairs as `(l, Some(r))`, and each left row
    /// that never matched as `(l, None)` when it can no longer match (see the module).
    pub fn left_outer(self, uid: &str) -> Stream<K, (L, Option<R>)> {
        self.regular(uid, |l, r| (l.clone(), Some(r.clone())), Some(|l| (l.clone(), None)), None)
    }

    /// Full outer equi-join: pairs as `(Some(l), Some(r))`, rows of either side that
    /// never matched as `(Some(l), None)` / `(None, Some(r))` when they can no longer
    /// match.
    pub fn full_outer(self, uid: &str) -> Stream<K, (Option<L>, Option<R>)> {
        self.regular(uid, |l, r| (Some(l.clone()), Some(r.clone())), Some(|l| (Some(l.clone()), None)), Some(|r| (None, Some(r.clone()))))
    }

    /// A window join in event time: rows of a key in the same window meet when it
    /// fires. Finish with [`WindowJoin::apply`]. A retention or TTL fails the plan: the
    /// window bounds the state.
    pub fn window(self, windows: Windows) -> WindowJoin<K, L, R> {
        if self.retention.is_some() || self.ttl.is_some() {
            self.left.fail("window join: retention_ms and state_ttl are for regular joins (the window bounds the state)");
        }
        WindowJoin { joined: self, windows }
    }
}

/// A row of a regular join in its key's state.
#[derive(Serialize, Deserialize)]
pub(crate) struct Kept<T> {
    ts: i64,
    row: T,
    matched: bool,
    /// Processing time at which the row expires under a state TTL.
    expires: Option<i64>,
}

/// A key's rows of a regular join, per side.
#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "L: Serialize, R: Serialize", deserialize = "L: Data, R: Data"))]
pub(crate) struct Rows<L, R> {
    left: Vec<Kept<L>>,
    right: Vec<Kept<R>>,
}

/// The regular join's function: the output of a pair, and of an unmatched row of a side
/// an outer join keeps (`None`: the side's unmatched rows are not emitted), so the three
/// joins are one operator.
pub(crate) struct RegularJoin<L, R, W> {
    pair: fn(&L, &R) -> W,
    left_alone: Option<fn(&L) -> W>,
    right_alone: Option<fn(&R) -> W>,
    /// Event-time retention in ms.
    retention: Option<i64>,
    /// Processing-time TTL of each row.
    ttl: Option<StateTtl>,
}

/// When a row arrives: its time and its expiry, whether it meets a row at another time,
/// and what reading the other side's rows does to their expiry.
struct Arrival {
    ts: i64,
    now: i64,
    expires: Option<i64>,
    refresh: bool,
    retention: Option<i64>,
}

impl Arrival {
    fn meets(&self, other_ts: i64) -> bool {
        self.retention.is_none_or(|r| self.ts.abs_diff(other_ts) <= r.unsigned_abs())
    }

    /// Drops the expired rows of `rows`.
    fn expire<T>(&self, rows: &mut Vec<Kept<T>>) {
        rows.retain(|k| k.expires.is_none_or(|e| e > self.now));
    }

    /// Meets the new row `mine` with the other side's `rows` (the pair's output made by
    /// `pair`), marking them matched; true if any did.
    fn meet<A, B, W: Serialize + 'static>(&self, mine: &A, rows: &mut [Kept<B>], pair: impl Fn(&A, &B) -> W, out: &mut Emitter<'_, W>) -> bool {
        let mut any = false;
        for other in rows.iter_mut() {
            if self.refresh {
                other.expires = self.expires;
            }
            if self.meets(other.ts) {
                out.emit_ref(&pair(mine, &other.row));
                other.matched = true;
                any = true;
            }
        }
        any
    }

    fn keep<T>(&self, row: T, matched: bool) -> Kept<T> {
        Kept { ts: self.ts, row, matched, expires: self.expires }
    }
}

/// Emits the rows of one side that never matched and can no longer (`due`), each at its
/// own timestamp.
fn emit_alone<T, W: Serialize + 'static>(rows: &[Kept<T>], alone: Option<fn(&T) -> W>, due: impl Fn(i64) -> bool, out: &mut Emitter<'_, W>) {
    let Some(alone) = alone else { return };
    for k in rows.iter().filter(|k| !k.matched && due(k.ts)) {
        out.emit_at(k.ts, &alone(&k.row));
    }
}

impl<L, R, W> RegularJoin<L, R, W> {
    /// The watermark at which a row at `ts` can no longer match: its timestamp + the
    /// retention, or never (the end of time) without one. Outer rows without a match
    /// are emitted then, and rows dropped.
    pub(crate) fn row_deadline(&self, ts: i64) -> i64 {
        self.retention.map_or(i64::MAX, |r| ts.saturating_add(r))
    }

    fn is_outer(&self) -> bool {
        self.left_alone.is_some() || self.right_alone.is_some()
    }

    /// What a row arriving now needs; `None` if it is late under a retention (rows it
    /// should have met may be gone already).
    fn arrival<K, S>(&self, ctx: &TimerContext<'_, K, S>) -> Option<Arrival> {
        let ts = ctx.timestamp();
        if self.retention.is_some() && ts <= ctx.current_watermark() {
            return None;
        }
        let now = ctx.current_processing_time();
        let expires = self.ttl.map(|t| now.saturating_add(i64::try_from(t.ms()).unwrap_or(i64::MAX)));
        let refresh = self.ttl.is_some_and(|t| t.update_on_read);
        Some(Arrival { ts, now, expires, refresh, retention: self.retention })
    }

    /// A timer for the row's deadline, if anything happens then.
    fn set_deadline<K, S>(&self, ctx: &mut TimerContext<'_, K, S>, ts: i64) {
        if self.retention.is_some() || self.is_outer() {
            ctx.register_event_time_timer(self.row_deadline(ts));
        }
    }
}

impl<K: Data, L: Data, R: Data, W: Data> KeyedCoProcessFunction<K, L, R> for RegularJoin<L, R, W> {
    type State = Rows<L, R>;
    type Out = W;

    fn process_element1(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: L, out: &mut Emitter<'_, W>) {
        let Some(a) = self.arrival(ctx) else { return };
        match ctx.state_mut() {
            Some(rows) => {
                a.expire(&mut rows.left);
                a.expire(&mut rows.right);
                let matched = a.meet(&value, &mut rows.right, self.pair, out);
                rows.left.push(a.keep(value, matched));
            }
            None => ctx.set_state(Rows { left: vec![a.keep(value, false)], right: Vec::new() }),
        }
        self.set_deadline(ctx, a.ts);
    }

    fn process_element2(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: R, out: &mut Emitter<'_, W>) {
        let Some(a) = self.arrival(ctx) else { return };
        let pair = self.pair;
        match ctx.state_mut() {
            Some(rows) => {
                a.expire(&mut rows.left);
                a.expire(&mut rows.right);
                let matched = a.meet(&value, &mut rows.left, |r, l| pair(l, r), out);
                rows.right.push(a.keep(value, matched));
            }
            None => ctx.set_state(Rows { left: Vec::new(), right: vec![a.keep(value, false)] }),
        }
        self.set_deadline(ctx, a.ts);
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, timer: Timer, out: &mut Emitter<'_, W>) {
        let due = |ts: i64| self.row_deadline(ts) <= timer.ts;
        let now = ctx.current_processing_time();
        let live = |expires: Option<i64>| expires.is_none_or(|e| e > now);
        let Some(rows) = ctx.state() else { return };
        let goes = |k_ts: i64, expires: Option<i64>| due(k_ts) || !live(expires);
        if !rows.left.iter().any(|k| goes(k.ts, k.expires)) && !rows.right.iter().any(|k| goes(k.ts, k.expires)) {
            return;
        }
        let Some(rows) = ctx.state_mut() else { return };
        // An expired row is gone, outer or not: it is not emitted.
        rows.left.retain(|k| live(k.expires));
        rows.right.retain(|k| live(k.expires));
        emit_alone(&rows.left, self.left_alone, due, out);
        emit_alone(&rows.right, self.right_alone, due, out);
        rows.left.retain(|k| !due(k.ts));
        rows.right.retain(|k| !due(k.ts));
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
        let mut op = with_clock::<u32, u64, u64, _>(full_outer(None, None), clock.clone());
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

    /// A full outer join of `u64` rows.
    fn full_outer(retention: Option<i64>, ttl: Option<StateTtl>) -> RegularJoin<u64, u64, (Option<u64>, Option<u64>)> {
        RegularJoin {
            pair: |l, r| (Some(*l), Some(*r)),
            left_alone: Some(|l| (Some(*l), None)),
            right_alone: Some(|r| (None, Some(*r))),
            retention,
            ttl,
        }
    }

    fn timer_times(o: &KeyedOutput) -> Vec<i64> {
        o.timers.iter().map(|t| t.ts).collect()
    }

    #[track_caller]
    fn state_of(o: &KeyedOutput) -> Vec<u8> {
        match o.states[0].clone().flatten() {
            Some(s) => s,
            None => panic!("no state: {:?}", o.states),
        }
    }

    #[test]
    fn a_join_with_retention_meets_rows_at_most_that_far_apart_and_ends_them_at_the_watermark() {
        let clock = TestClock::at(0);
        let mut op = with_clock::<u32, u64, u64, _>(full_outer(Some(10), None), clock.clone());
        let key = enc(&7u32);
        let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(100, 10)]), 0).unwrap(), 1);
        assert!(o.records.is_empty());
        assert_eq!(timer_times(&o), [110], "a row ends when the watermark reaches its time + the retention");
        // Right 20 at 105 is within 10 ms of left 10; right 21 at 111 is not.
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state_of(&o)), 1, &[(105, 20), (111, 21)]), 0).unwrap(), 1);
        assert_eq!(o.records, [(105, key.clone(), enc(&(Some(10u64), Some(20u64))))]);
        assert_eq!(timer_times(&o), [115, 121]);
        // Watermark 110: left 10 matched, so it leaves without a line.
        clock.watermark.set(110);
        let fired = timer_input(&[(&key, Some(&state_of(&o)))], &[(0, 110, TimeDomain::Event)]);
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 1);
        assert!(o.records.is_empty());
        let state = state_of(&o);
        // Left 11 at 120 meets right 21 (9 ms) but not right 20 (15 ms); left 12 at 109
        // is behind the watermark: late, dropped.
        let o = parse_keyed_output(&op.process(&batch(&key, Some(&state), 0, &[(120, 11), (109, 12)]), 0).unwrap(), 1);
        assert_eq!(o.records, [(120, key.clone(), enc(&(Some(11u64), Some(21u64))))]);
        assert_eq!(timer_times(&o), [130]);
        let state = state_of(&o);
        // Another key: left 13 at 112 meets nothing within its retention; a right row at
        // 123, 11 ms later, does not save it.
        let lone = enc(&8u32);
        let o = parse_keyed_output(&op.process(&batch(&lone, None, 0, &[(112, 13)]), 0).unwrap(), 1);
        let o = parse_keyed_output(&op.process(&batch(&lone, Some(&state_of(&o)), 1, &[(123, 22)]), 0).unwrap(), 1);
        assert!(o.records.is_empty());
        let lone_state = state_of(&o);
        clock.watermark.set(133);
        let fired = timer_input(
            &[(&key, Some(&state)), (&lone, Some(&lone_state))],
            &[
                (0, 115, TimeDomain::Event),
                (0, 121, TimeDomain::Event),
                (1, 122, TimeDomain::Event),
                (0, 130, TimeDomain::Event),
                (1, 133, TimeDomain::Event),
            ],
        );
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 2);
        assert_eq!(
            o.records,
            [(112, lone.clone(), enc(&(Some(13u64), None::<u64>))), (123, lone.clone(), enc(&(None::<u64>, Some(22u64))))],
            "unmatched rows come out at their own time once their retention ends, matched ones never"
        );
        assert_eq!(o.states, [Some(None), Some(None)], "every row ended: nothing is kept");
    }

    #[test]
    fn under_a_state_ttl_each_row_expires_on_its_own_and_never_matches_after() {
        for update_on_read in [false, true] {
            let ttl = if update_on_read { StateTtl::new(100).update_on_read() } else { StateTtl::new(100) };
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = with_clock::<u32, u64, u64, _>(full_outer(None, Some(ttl)), clock.clone());
            assert!(op.set_state_ttl(ttl));
            let key = enc(&7u32);
            let o = parse_keyed_output(&op.process(&batch(&key, None, 0, &[(1, 10)]), 0).unwrap(), 1);
            // Right 20 arrives 99 ms later: left 10 lives, they meet.
            clock.processing_time.set(1_099);
            let o = parse_keyed_output(&op.process(&batch(&key, Some(&state_of(&o)), 1, &[(2, 20)]), 0).unwrap(), 1);
            assert_eq!(o.records, [(2, key.clone(), enc(&(Some(10u64), Some(20u64))))]);
            // 100 ms after left 10 arrived: the key's state lives (right 20 wrote it), but
            // left 10 expired, unless meeting right 20 refreshed it.
            clock.processing_time.set(1_100);
            let o = parse_keyed_output(&op.process(&batch(&key, Some(&state_of(&o)), 1, &[(3, 21)]), 0).unwrap(), 1);
            let expected = if update_on_read { vec![(3, key.clone(), enc(&(Some(10u64), Some(21u64))))] } else { vec![] };
            assert_eq!(o.records, expected, "update_on_read={update_on_read}");
            // At the end of time nothing that expired comes out alone, nor anything that
            // matched.
            clock.processing_time.set(1_150);
            let fired = timer_input(&[(&key, Some(&state_of(&o)))], &[(0, i64::MAX, TimeDomain::Event)]);
            let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 1);
            let expected = if update_on_read { vec![] } else { vec![(3, key.clone(), enc(&(None::<u64>, Some(21u64))))] };
            assert_eq!(o.records, expected, "update_on_read={update_on_read}: right 21 is alone unless it met the refreshed left 10");
        }
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
