//! Keyed operators with timers, and the `timers.on-timer` export.
//!
//! [`Timed`] runs both calls of a keyed operator that sets timers through one
//! [`TimedLogic`]: `process` (a key table, then records) and `on-timer` (the same key
//! table, then fired timers). The public [`KeyedProcessFunction`] is one such logic, and
//! so are the window operators (`crate::windowed`), which need the raw value bytes.
//!
//! Timer changes are collected during a call and written after the state updates, and
//! only if there are any, so an output without timer changes has exactly the bytes of a
//! plain keyed operator's output. The host keeps one timer per key, time and domain, so
//! setting a timer twice is harmless.

use core::any::{Any, TypeId};
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use std::rc::Rc;

use weir_batch::{FiredTimer, KeyedRecord, TimeDomain, TimerChange, push_timer_change, push_timers_header};

use crate::Data;
use crate::codec::{Out, decode, put_encoded};
use crate::emit::{Emitter, KeyMode};
use crate::error::OpError;
use crate::keyed::{KeyedContext, KeyedItem, Keys, Slot, StateCodec, decode_value_state, keyed_call};
use crate::ops::{Operator, accepts_key, install_key};
use crate::runtime::{self, JobMain};
use crate::side::{self, Ending};
use crate::time::{BatchClock, Clock, Timer, host_clock};
use crate::ttl::{StateTtl, TtlNow};
use crate::wit::exports::weir::dataflow::operator::OperatorError;
use crate::wit::exports::weir::dataflow::timers as wit_timers;

impl<T: JobMain> wit_timers::Guest for T {
    fn on_timer(op: u32, batch: Vec<u8>) -> Result<Vec<u8>, OperatorError> {
        Ok(runtime::on_timer(op, &batch)?)
    }
}

/// The timer changes of one call, in order.
#[derive(Default)]
pub(crate) struct TimerChanges(Vec<TimerChange>);

impl TimerChanges {
    /// Sets (`set`) or deletes a timer of key `key_index`.
    ///
    /// Registering the same timers for every record of a key is a common pattern, so a
    /// change that the last few already make is left out: the nearest earlier change of
    /// the same timer decides its state, and if that is this change, this one is a
    /// no-op (the host would ignore it, after reading it). A bounded look-back keeps
    /// this a few comparisons.
    #[inline]
    pub(crate) fn push(&mut self, set: bool, domain: TimeDomain, key_index: u32, ts: i64) {
        let change = TimerChange { set, domain, key_index, ts };
        let same_timer = |c: &&TimerChange| c.ts == ts && c.key_index == key_index && c.domain == domain;
        if self.0.iter().rev().take(4).find(same_timer).is_none_or(|c| c.set != set) {
            self.0.push(change);
        }
    }

    /// Appends the trailer, if there is anything to say.
    fn write(&self, out: &mut Out) {
        if self.0.is_empty() {
            return;
        }
        push_timers_header(out, self.0.len() as u32);
        for change in &self.0 {
            push_timer_change(out, *change);
        }
    }
}

/// What a [`TimedLogic`] sees of the key of the current record or fired timer.
pub(crate) struct Cx<'a, S> {
    /// The key's index in the call's key table: what timer changes name.
    pub(crate) key_index: u32,
    /// The encoded key.
    pub(crate) key: &'a [u8],
    /// The record's timestamp, or the fired timer's time.
    pub(crate) ts: i64,
    /// The key's value state, written back once at the end of the call.
    pub(crate) state: &'a mut Option<S>,
    /// Set when the state is written.
    pub(crate) changed: &'a mut bool,
    pub(crate) timers: &'a mut TimerChanges,
    pub(crate) clock: &'a BatchClock<'a>,
    /// The operator's state TTL and the call's time, if it has one.
    pub(crate) ttl: Option<TtlNow>,
}

/// A keyed operator that sets timers, as [`Timed`] drives it.
pub(crate) trait TimedLogic: 'static {
    /// The value state of a key.
    type State: Data;
    /// The output values.
    type Out: Data;

    /// Decodes a key's value state: postcard, unless the operator has its own codec.
    #[inline(always)]
    fn decode_state(bytes: &[u8]) -> Result<Self::State, OpError> {
        decode_value_state(bytes)
    }

    /// Appends a key's value state, length-prefixed: postcard, unless the operator has
    /// its own codec.
    #[inline(always)]
    fn put_state(out: &mut Out, state: &Self::State) -> Result<(), OpError> {
        put_encoded(out, state)
    }

    /// Called at the start of each call, before its keys.
    fn begin(&mut self) {}

    /// Sees each key of the call's key table, in order.
    fn on_key(&mut self, _key: &[u8]) -> Result<(), OpError> {
        Ok(())
    }

    /// One record. The emitter is set to the record's key and timestamp.
    fn on_record(&mut self, cx: Cx<'_, Self::State>, value: &[u8], out: &mut Emitter<'_, Self::Out>) -> Result<(), OpError>;

    /// One fired timer. The emitter is set to the key and the timer's time.
    fn on_timer(&mut self, cx: Cx<'_, Self::State>, timer: Timer, out: &mut Emitter<'_, Self::Out>) -> Result<(), OpError>;

    /// Called once when the subtask finishes.
    fn close(&mut self) -> Result<(), OpError> {
        Ok(())
    }
}

/// The operator of a [`TimedLogic`]: reads the key table and the records or fired
/// timers of each call, and writes records, state updates and timer changes.
pub(crate) struct Timed<L: TimedLogic> {
    logic: L,
    key_mode: KeyMode<L::Out>,
    keys: Keys<L::State>,
    timers: TimerChanges,
    clock: Rc<dyn Clock>,
}

impl<L: TimedLogic> Timed<L> {
    pub(crate) fn new(logic: L) -> Self {
        Timed { logic, key_mode: KeyMode::Keep, keys: Keys::new(), timers: TimerChanges::default(), clock: host_clock() }
    }

    /// The same operator reading time from `clock` (native tests).
    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Rc<dyn Clock>) -> Self {
        self.keys.clock = clock.clone();
        Timed { clock, ..self }
    }

    /// The logic, for tests to look at its counters.
    #[cfg(test)]
    pub(crate) fn logic(&self) -> &L {
        &self.logic
    }

    /// The logic and how outputs are keyed, for calls that are not keyed (a broadcast
    /// input).
    pub(crate) fn logic_and_key_mode(&mut self) -> (&mut L, &mut KeyMode<L::Out>) {
        (&mut self.logic, &mut self.key_mode)
    }

    /// The logic, to tell it about the next call (a connect: which input).
    pub(crate) fn logic_mut(&mut self) -> &mut L {
        &mut self.logic
    }
}

impl<L: TimedLogic> Timed<L> {
    /// One call: the keyed frame, with `item` handling each record or fired timer, and
    /// the timer changes written last.
    #[inline(always)]
    fn call<'a, I: KeyedItem<'a>>(
        &mut self,
        input: &'a [u8],
        capacity: usize,
        mut item: impl FnMut(&mut L, Cx<'_, L::State>, I, &mut Emitter<'_, L::Out>) -> Result<(), OpError>,
    ) -> Result<Vec<u8>, OpError> {
        let Timed { logic, key_mode, keys, timers, clock } = self;
        logic.begin();
        let now = BatchClock::new(&**clock);
        timers.0.clear();
        let mut out = keyed_call::<I, LogicCodec<L>, _, _, _>(
            keys,
            key_mode,
            input,
            capacity,
            logic,
            |logic, key| logic.on_key(key),
            |logic, _, it, slot: &mut Slot<'a, L::State>, em, ttl| {
                let (key_index, ts) = it.key_ts();
                let cx =
                    Cx { key_index, key: slot.key, ts, state: &mut slot.state, changed: &mut slot.changed, timers: &mut *timers, clock: &now, ttl };
                item(logic, cx, it, em)
            },
        )?;
        timers.write(&mut out);
        side::append(&mut out, Ending::Keyed { timers_written: !timers.0.is_empty() })?;
        Ok(out.into_vec())
    }
}

/// The state codec of a [`TimedLogic`].
struct LogicCodec<L>(PhantomData<L>);

impl<L: TimedLogic> StateCodec<L::State> for LogicCodec<L> {
    #[inline(always)]
    fn decode(bytes: &[u8]) -> Result<L::State, OpError> {
        L::decode_state(bytes)
    }

    #[inline(always)]
    fn put(out: &mut Out, state: &L::State) -> Result<(), OpError> {
        L::put_state(out, state)
    }
}

impl<L: TimedLogic> Operator for Timed<L> {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        self.call(input, capacity, |logic, cx, rec: KeyedRecord<'_>, em| logic.on_record(cx, rec.value, em))
    }

    fn on_timer(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        self.call(input, capacity, |logic, cx, fired: FiredTimer, em| logic.on_timer(cx, Timer { ts: fired.ts, domain: fired.domain }, em))
    }

    fn close(&mut self) -> Result<(), OpError> {
        self.logic.close()
    }

    fn accepts_key(&self, value_type: TypeId) -> bool {
        accepts_key(&self.key_mode, value_type)
    }

    fn fuse_key(&mut self, key: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        install_key(&mut self.key_mode, key)
    }

    fn set_state_ttl(&mut self, ttl: StateTtl) -> bool {
        self.keys.ttl = Some(ttl);
        true
    }
}

/// What a [`KeyedProcessFunction`] sees of the current record's or timer's key:
/// everything [`KeyedContext`] offers (it derefs to one: key, value state, map and list
/// state, timestamp), plus time and timers, as Flink's `KeyedProcessFunction.Context`
/// with its `TimerService`.
///
/// Timers belong to the key. The host keeps at most one per key, time and domain, so
/// registering a timer that is already set does nothing; a fired timer is gone. While
/// a timer fires, [`KeyedContext::timestamp`] is its time.
pub struct TimerContext<'a, K, S> {
    keyed: KeyedContext<'a, K, S>,
    key_index: u32,
    timers: &'a mut TimerChanges,
    clock: &'a BatchClock<'a>,
    timer: Option<Timer>,
}

impl<'a, K, S> Deref for TimerContext<'a, K, S> {
    type Target = KeyedContext<'a, K, S>;

    fn deref(&self) -> &Self::Target {
        &self.keyed
    }
}

impl<K, S> DerefMut for TimerContext<'_, K, S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.keyed
    }
}

impl<K, S> TimerContext<'_, K, S> {
    /// The watermark of this operator's input: no record at or before it follows.
    /// `i64::MIN` before the first watermark. Read from the host once per batch.
    pub fn current_watermark(&self) -> i64 {
        self.clock.watermark()
    }

    /// Processing time (ms since the Unix epoch, by the TaskManager's clock), read once
    /// per batch.
    pub fn current_processing_time(&self) -> i64 {
        self.clock.processing_time()
    }

    /// Fires [`KeyedProcessFunction::on_timer`] for this key once the watermark reaches
    /// `ts`.
    pub fn register_event_time_timer(&mut self, ts: i64) {
        self.timers.push(true, TimeDomain::Event, self.key_index, ts);
    }

    /// Deletes this key's event-time timer at `ts`, if set.
    pub fn delete_event_time_timer(&mut self, ts: i64) {
        self.timers.push(false, TimeDomain::Event, self.key_index, ts);
    }

    /// Fires [`KeyedProcessFunction::on_timer`] for this key once processing time
    /// reaches `ts`.
    pub fn register_processing_time_timer(&mut self, ts: i64) {
        self.timers.push(true, TimeDomain::Processing, self.key_index, ts);
    }

    /// Deletes this key's processing-time timer at `ts`, if set.
    pub fn delete_processing_time_timer(&mut self, ts: i64) {
        self.timers.push(false, TimeDomain::Processing, self.key_index, ts);
    }

    /// The timer that is firing; `None` while a record is processed.
    pub fn timer(&self) -> Option<Timer> {
        self.timer
    }
}

/// A keyed function with timers, Flink's `KeyedProcessFunction`: `process_element` sees
/// every record and may set timers for its key; `on_timer` runs when one fires, with the
/// key's state. Both emit any number of records, which keep the key; they carry the
/// record's timestamp, or the timer's time in `on_timer` (`Emitter::emit_at` chooses
/// another).
///
/// Use it with [`KeyedStream::process_function`](crate::KeyedStream::process_function),
/// or pass two closures to
/// [`KeyedStream::process_with_timers`](crate::KeyedStream::process_with_timers).
pub trait KeyedProcessFunction<K, V>: 'static {
    /// The value state of each key (travels with the batch, like `process`'s).
    type State: Data;
    /// The values emitted.
    type Out: Data;

    /// Processes one record.
    fn process_element(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: V, out: &mut Emitter<'_, Self::Out>);

    /// Runs when `timer`, set for `ctx.key()`, fires.
    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, timer: Timer, out: &mut Emitter<'_, Self::Out>);
}

/// The `KeyedProcessFunction` of `process_with_timers`' two closures.
pub(crate) struct Closures<S, W, P, T> {
    on_record: P,
    on_timer: T,
    _t: PhantomData<fn() -> (S, W)>,
}

impl<S, W, P, T> Closures<S, W, P, T> {
    pub(crate) fn new(on_record: P, on_timer: T) -> Self {
        Closures { on_record, on_timer, _t: PhantomData }
    }
}

impl<K, V, S, W, P, T> KeyedProcessFunction<K, V> for Closures<S, W, P, T>
where
    S: Data,
    W: Data,
    P: FnMut(&mut TimerContext<'_, K, S>, V, &mut Emitter<'_, W>) + 'static,
    T: FnMut(&mut TimerContext<'_, K, S>, Timer, &mut Emitter<'_, W>) + 'static,
{
    type State = S;
    type Out = W;

    fn process_element(&mut self, ctx: &mut TimerContext<'_, K, S>, value: V, out: &mut Emitter<'_, W>) {
        (self.on_record)(ctx, value, out)
    }

    fn on_timer(&mut self, ctx: &mut TimerContext<'_, K, S>, timer: Timer, out: &mut Emitter<'_, W>) {
        (self.on_timer)(ctx, timer, out)
    }
}

/// The [`TimedLogic`] of a [`KeyedProcessFunction`]: decodes keys (once per key and
/// call) and values, and hands out [`TimerContext`]s.
pub(crate) struct ProcessFn<K, V, F> {
    f: F,
    typed: Vec<K>,
    _v: PhantomData<fn(V)>,
}

impl<K: Data, V: Data, F: KeyedProcessFunction<K, V>> ProcessFn<K, V, F> {
    pub(crate) fn boxed(f: F) -> Box<dyn Operator> {
        Box::new(Timed::new(ProcessFn { f, typed: Vec::new(), _v: PhantomData }))
    }

    #[cfg(test)]
    pub(crate) fn timed(f: F) -> Timed<Self> {
        Timed::new(ProcessFn { f, typed: Vec::new(), _v: PhantomData })
    }
}

/// The context of `cx`'s key, whose typed key is in `typed`.
pub(crate) fn context<'a, K, S>(typed: &'a [K], cx: Cx<'a, S>, timer: Option<Timer>) -> Result<TimerContext<'a, K, S>, OpError> {
    // The driver checked the index against the key table, which `typed` mirrors.
    let Some(key) = typed.get(cx.key_index as usize) else {
        return Err(OpError::BadInput(format!("key index {} without a decoded key", cx.key_index)));
    };
    let keyed = KeyedContext::new(key, cx.key, cx.state, cx.changed, cx.ts, cx.ttl);
    Ok(TimerContext { keyed, key_index: cx.key_index, timers: cx.timers, clock: cx.clock, timer })
}

impl<K: Data, V: Data, F: KeyedProcessFunction<K, V>> TimedLogic for ProcessFn<K, V, F> {
    type State = F::State;
    type Out = F::Out;

    fn begin(&mut self) {
        self.typed.clear();
    }

    fn on_key(&mut self, key: &[u8]) -> Result<(), OpError> {
        self.typed.push(decode(key, "key")?);
        Ok(())
    }

    fn on_record(&mut self, cx: Cx<'_, F::State>, value: &[u8], out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        let value: V = decode(value, "record value")?;
        let mut ctx = context(&self.typed, cx, None)?;
        self.f.process_element(&mut ctx, value, out);
        Ok(())
    }

    fn on_timer(&mut self, cx: Cx<'_, F::State>, timer: Timer, out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        let mut ctx = context(&self.typed, cx, Some(timer))?;
        self.f.on_timer(&mut ctx, timer, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Serialize;

    use super::*;
    use crate::codec::build::*;
    use crate::keyed::{self, Process};
    use crate::time::TestClock;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    fn change(set: bool, domain: TimeDomain, key_index: u32, ts: i64) -> TimerChange {
        TimerChange { set, domain, key_index, ts }
    }

    /// Counts records per key and fires 10 ms after each one; the timer emits the count
    /// and clears it.
    struct CountThenFire;

    impl KeyedProcessFunction<String, u64> for CountThenFire {
        type State = u64;
        type Out = String;

        fn process_element(&mut self, ctx: &mut TimerContext<'_, String, u64>, value: u64, _out: &mut Emitter<'_, String>) {
            assert_eq!(ctx.timer(), None);
            let n = ctx.state().copied().unwrap_or(0) + value;
            ctx.set_state(n);
            if ctx.current_watermark() < ctx.timestamp() {
                ctx.register_event_time_timer(ctx.timestamp() + 10);
            }
            ctx.register_processing_time_timer(ctx.current_processing_time() + 1000);
        }

        fn on_timer(&mut self, ctx: &mut TimerContext<'_, String, u64>, timer: Timer, out: &mut Emitter<'_, String>) {
            assert_eq!(ctx.timer(), Some(timer));
            assert_eq!(ctx.timestamp(), timer.ts);
            out.emit(format!("{} {} {:?}", ctx.key(), ctx.state().copied().unwrap_or(0), timer.domain));
            ctx.clear_state();
            ctx.delete_processing_time_timer(ctx.current_processing_time() + 1000);
        }
    }

    #[test]
    fn process_function_sets_timers_and_fires_them() {
        let clock = TestClock::at(40);
        clock.processing_time.set(7_000);
        let mut op = ProcessFn::timed(CountThenFire).with_clock(clock.clone());
        let (a, b) = (enc(&"a"), enc(&"b"));
        let input =
            keyed(&[(&a, None), (&b, Some(&enc(&5u64)))], &[(0, 50, &enc(&1u64)), (0, 50, &enc(&1u64)), (1, 30, &enc(&2u64)), (0, 60, &enc(&1u64))]);
        let o = parse_keyed_output(&op.process(&input, 0).unwrap(), 2);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [Some(Some(enc(&3u64))), Some(Some(enc(&7u64)))]);
        let (ev, pt) = (TimeDomain::Event, TimeDomain::Processing);
        // The second record of a and a's last processing-time timer repeat changes made
        // just before; b's record is behind the watermark and sets no event-time timer.
        assert_eq!(o.timers, [change(true, ev, 0, 60), change(true, pt, 0, 8_000), change(true, pt, 1, 8_000), change(true, ev, 0, 70)]);
        assert_eq!(clock.reads.get(), 2, "watermark and processing time are each asked once per batch");

        let input = timer_input(&[(&a, Some(&enc(&3u64)))], &[(0, 60, ev), (0, 70, ev)]);
        let o = parse_keyed_output(&op.on_timer(&input, 0).unwrap(), 1);
        assert_eq!(o.records, [(60, a.clone(), enc(&"a 3 Event")), (70, a.clone(), enc(&"a 0 Event"))], "records carry the timer's time");
        assert_eq!(o.states, [Some(None)]);
        assert_eq!(o.timers, [change(false, pt, 0, 8_000)]);
        // A delete in between makes a repeated set count again.
        let mut changes = TimerChanges::default();
        for set in [true, true, false, true, true] {
            changes.push(set, ev, 0, 5);
        }
        assert_eq!(changes.0, [change(true, ev, 0, 5), change(false, ev, 0, 5), change(true, ev, 0, 5)]);
    }

    #[test]
    fn outputs_without_timer_changes_are_plain_keyed_outputs() {
        let f = |ctx: &mut KeyedContext<'_, u32, u64>, v: u64, out: &mut Emitter<'_, u64>| {
            let n = ctx.state().copied().unwrap_or(0) + v;
            ctx.set_state(n);
            out.emit(n);
        };
        let mut plain = Process::boxed(f);
        let clock = TestClock::at(0);
        let mut timed = ProcessFn::timed(Closures::<u64, u64, _, _>::new(
            move |ctx: &mut TimerContext<'_, u32, u64>, v: u64, out: &mut Emitter<'_, u64>| f(ctx, v, out),
            |_: &mut TimerContext<'_, u32, u64>, _: Timer, _: &mut Emitter<'_, u64>| {},
        ))
        .with_clock(clock.clone());
        let input = keyed(&[(&enc(&1u32), Some(&enc(&4u64))), (&enc(&2u32), None)], &[(0, 5, &enc(&1u64)), (1, 6, &enc(&2u64))]);
        assert_eq!(timed.process(&input, 0).unwrap(), plain.process(&input, 0).unwrap());
        assert_eq!(clock.reads.get(), 0, "a batch that reads no time makes no host call");
    }

    #[test]
    fn operators_without_timers_refuse_on_timer() {
        let mut op = keyed::count();
        let input = timer_input(&[(b"\x01", None)], &[(0, 5, TimeDomain::Event)]);
        assert!(matches!(op.on_timer(&input, 0), Err(OpError::Failed(_))));
    }

    #[test]
    fn bad_timer_input_is_bad_input() {
        let mut op = ProcessFn::timed(CountThenFire).with_clock(TestClock::at(0));
        let input = timer_input(&[(&enc(&"a"), None)], &[(3, 5, TimeDomain::Event)]);
        assert!(matches!(op.on_timer(&input, 0), Err(OpError::BadInput(_))));
        let input = timer_input(&[(&[0xff, 0xff], None)], &[]);
        assert!(matches!(op.on_timer(&input, 0), Err(OpError::BadInput(_))), "a key that is no String");
    }
}
