//! Broadcast state: Flink's `KeyedBroadcastProcessFunction`, the operator of
//! `KeyedStream::connect_broadcast(control).process(..)`.
//!
//! A low-volume control stream (rules, lookup tables) reaches every subtask of a keyed
//! operator (a broadcast edge into its second input) and is kept in the operator's
//! broadcast state: a map the host holds once per subtask, outside every key, written
//! only by [`KeyedBroadcastProcessFunction::process_broadcast_element`] and read by the
//! keyed side. Every subtask sees every control record, so every copy is the same, the
//! host checkpoints one of them and a restore gives it to every subtask at any
//! parallelism.
//!
//! As in Flink, the copies only stay the same if `process_broadcast_element` is
//! deterministic per element and does not depend on the order of control records that
//! came from different upstream subtasks (each upstream subtask's order is kept, their
//! interleaving is not): give the control stream parallelism 1, or make its updates
//! commute (e.g. versions keyed by their effective time).
//!
//! The host sends a broadcast batch plain (no key table: its keys need not be this
//! subtask's), tagged with input 1; the operator returns a plain output. Records that
//! `process_broadcast_element` emits name a key of the keyed stream ([`BroadcastEmitter`]):
//! every subtask runs it on every control record, and the host passes on only the
//! records whose key group the subtask owns, so each comes out once whatever the
//! parallelism (Flink emits one copy per parallel instance).

use core::any::{Any, TypeId};
use core::marker::PhantomData;

use weir_batch::{Reader, begin_output, end_records};

use crate::Data;
use crate::codec::{Out, decode, read_record};
use crate::emit::Emitter;
use crate::error::{OpError, StateError};
use crate::ops::Operator;
use crate::side::{self, Ending};
use crate::time::Timer;
use crate::timers::{Cx, Timed, TimedLogic, TimerContext, context};

/// The name of an operator's broadcast state in the host (one per operator).
const NAME: &str = "broadcast";

/// A keyed function with a broadcast control input, Flink's
/// `KeyedBroadcastProcessFunction`: `process_element` sees each keyed record with its
/// key's [`TimerContext`] and the broadcast state read-only; `process_broadcast_element`
/// sees each control record with the broadcast state to change; `on_timer` reads it
/// too.
///
/// The control records and the keyed records arrive in no particular order relative to
/// each other; for results that do not depend on it, let keyed records wait for the
/// watermark (a timer) and keep control records as versions by their time.
pub trait KeyedBroadcastProcessFunction<K, V, B>: 'static {
    /// The value state of each key.
    type State: Data;
    /// The values emitted.
    type Out: Data;
    /// The broadcast state's keys.
    type RuleKey: Data;
    /// The broadcast state's values.
    type Rule: Data;

    /// Processes one keyed record.
    fn process_element(
        &mut self,
        ctx: &mut TimerContext<'_, K, Self::State>,
        rules: &ReadOnlyBroadcastState<Self::RuleKey, Self::Rule>,
        value: V,
        out: &mut Emitter<'_, Self::Out>,
    );

    /// Processes one control record: every subtask gets it, in the same order per
    /// upstream subtask. Must be deterministic (see the module's docs). What it emits
    /// names its key and comes out once, from the subtask that owns that key.
    fn process_broadcast_element(
        &mut self,
        rules: &mut BroadcastState<Self::RuleKey, Self::Rule>,
        value: B,
        out: &mut BroadcastEmitter<'_, '_, K, Self::Out>,
    );

    /// Runs when `timer`, set for `ctx.key()`, fires. Default: nothing.
    fn on_timer(
        &mut self,
        _ctx: &mut TimerContext<'_, K, Self::State>,
        _rules: &ReadOnlyBroadcastState<Self::RuleKey, Self::Rule>,
        _timer: Timer,
        _out: &mut Emitter<'_, Self::Out>,
    ) {
    }
}

/// The broadcast state as the keyed side sees it: read only.
pub struct ReadOnlyBroadcastState<RK, RV>(PhantomData<fn() -> (RK, RV)>);

impl<RK: Data, RV: Data> ReadOnlyBroadcastState<RK, RV> {
    /// The value of `key`, if any.
    pub fn get(&self, key: &RK) -> Result<Option<RV>, StateError> {
        match backend::get(NAME, &encode(key)?)? {
            Some(bytes) => decode_entry(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every entry, ordered by the encoded bytes of its key (postcard: integers by
    /// varint bytes, so not numeric order; sort them if that matters).
    pub fn entries(&self) -> Result<Vec<(RK, RV)>, StateError> {
        backend::entries(NAME)?.iter().map(|(k, v)| Ok((decode_entry(k)?, decode_entry(v)?))).collect()
    }
}

/// The broadcast state as `process_broadcast_element` sees it: read and write.
pub struct BroadcastState<RK, RV>(ReadOnlyBroadcastState<RK, RV>);

impl<RK, RV> core::ops::Deref for BroadcastState<RK, RV> {
    type Target = ReadOnlyBroadcastState<RK, RV>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<RK: Data, RV: Data> BroadcastState<RK, RV> {
    /// Sets the value of `key`.
    pub fn put(&mut self, key: &RK, value: &RV) -> Result<(), StateError> {
        backend::put(NAME, &encode(key)?, &encode(value)?)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &RK) -> Result<(), StateError> {
        backend::remove(NAME, &encode(key)?)
    }
}

/// What [`KeyedBroadcastProcessFunction::process_broadcast_element`] emits with: a
/// control record has no key of the keyed stream, so each record names one. Every
/// subtask runs the function on every control record, and only the subtask that owns
/// the key's key group passes the record on: it comes out once, whatever the
/// parallelism, if the function is deterministic (as it must be anyway).
pub struct BroadcastEmitter<'e, 'a, K, W> {
    em: &'e mut Emitter<'a, W>,
    ts: i64,
    key: Out,
    _k: PhantomData<fn(&K)>,
}

impl<K: Data, W: Data> BroadcastEmitter<'_, '_, K, W> {
    /// The control record's timestamp, which emitted records carry.
    pub fn timestamp(&self) -> i64 {
        self.ts
    }

    /// Emits `value` under `key`, at the control record's timestamp.
    pub fn emit(&mut self, key: &K, value: W) {
        let ts = self.ts;
        self.emit_at(key, ts, &value);
    }

    /// Emits `value` under `key` with timestamp `ts`.
    pub fn emit_at(&mut self, key: &K, ts: i64, value: &W) {
        self.key.clear();
        match crate::codec::encode_into(&mut self.key, key) {
            Ok(()) => self.em.emit_keyed(self.key.as_slice(), ts, value),
            Err(e) => self.em.fail(crate::codec::encode_error::<K>(e)),
        }
    }

    /// Fails the batch with `msg` (see [`Emitter::fail`]).
    pub fn fail(&mut self, msg: impl core::fmt::Display) {
        self.em.fail(msg);
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_allocvec(v).map_err(|e| StateError::Codec(e.to_string()))
}

fn decode_entry<T: Data>(bytes: &[u8]) -> Result<T, StateError> {
    decode(bytes, "broadcast state").map_err(|e| StateError::Codec(e.to_string()))
}

/// The [`TimedLogic`] of the keyed side.
struct BroadcastFn<K, V, B, F: KeyedBroadcastProcessFunction<K, V, B>> {
    f: F,
    typed: Vec<K>,
    rules: ReadOnlyBroadcastState<F::RuleKey, F::Rule>,
    _v: PhantomData<fn(V, B)>,
}

impl<K: Data, V: Data, B: Data, F: KeyedBroadcastProcessFunction<K, V, B>> TimedLogic for BroadcastFn<K, V, B, F> {
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
        let mut ctx = context(&self.typed, cx, None)?;
        let value: V = decode(value, "record value of the keyed input")?;
        self.f.process_element(&mut ctx, &self.rules, value, out);
        Ok(())
    }

    fn on_timer(&mut self, cx: Cx<'_, F::State>, timer: Timer, out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        let mut ctx = context(&self.typed, cx, Some(timer))?;
        self.f.on_timer(&mut ctx, &self.rules, timer, out);
        Ok(())
    }
}

/// The operator: input 0 is a keyed call, input 1 a plain batch of control records.
pub(crate) struct BroadcastProcess<K: Data, V: Data, B: Data, F: KeyedBroadcastProcessFunction<K, V, B>>(Timed<BroadcastFn<K, V, B, F>>);

impl<K: Data, V: Data, B: Data, F: KeyedBroadcastProcessFunction<K, V, B>> BroadcastProcess<K, V, B, F> {
    pub(crate) fn boxed(f: F) -> Box<dyn Operator> {
        Box::new(Self::new(f))
    }

    fn new(f: F) -> Self {
        let rules = ReadOnlyBroadcastState(PhantomData);
        BroadcastProcess(Timed::new(BroadcastFn { f, typed: Vec::new(), rules, _v: PhantomData }))
    }

    fn control(&mut self, batch: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let mut rules = BroadcastState(ReadOnlyBroadcastState(PhantomData));
        let (logic, key_mode) = self.0.logic_and_key_mode();
        let mut out = Out::with_capacity(capacity.min(64));
        let at = begin_output(&mut out);
        let mut em = Emitter::new(&mut out, key_mode);
        let mut keyed = BroadcastEmitter { em: &mut em, ts: 0, key: Out::with_capacity(16), _k: PhantomData };
        let mut r = Reader::new(batch);
        while !r.is_empty() {
            let rec = read_record(&mut r)?;
            let value: B = decode(rec.value, "record value of the broadcast input")?;
            keyed.ts = rec.ts;
            logic.f.process_broadcast_element(&mut rules, value, &mut keyed);
            if let Some(e) = keyed.em.take_error() {
                return Err(e);
            }
        }
        drop(em);
        end_records(&mut out, at);
        side::append(&mut out, Ending::Records)?;
        Ok(out.into_vec())
    }
}

impl<K: Data, V: Data, B: Data, F: KeyedBroadcastProcessFunction<K, V, B>> Operator for BroadcastProcess<K, V, B, F> {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        match weir_batch::split_input(input)? {
            (batch, 0) => self.0.process(batch, capacity),
            (batch, _) => self.control(batch, capacity),
        }
    }

    fn on_timer(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        self.0.on_timer(input, capacity)
    }

    fn close(&mut self) -> Result<(), OpError> {
        self.0.close()
    }

    fn accepts_key(&self, value_type: TypeId) -> bool {
        self.0.accepts_key(value_type)
    }

    fn fuse_key(&mut self, key: Box<dyn Any>) -> Result<(), Box<dyn Any>> {
        self.0.fuse_key(key)
    }

    fn set_state_ttl(&mut self, ttl: crate::StateTtl) -> bool {
        self.0.set_state_ttl(ttl)
    }
}

/// A keyed stream and a control stream broadcast to it, waiting for the function
/// (Flink's `BroadcastConnectedStream`).
pub struct BroadcastConnectedStream<K, V, B> {
    pub(crate) keyed: crate::KeyedStream<K, V>,
    pub(crate) control: crate::job::BroadcastInput,
    pub(crate) _b: PhantomData<fn() -> B>,
}

impl<K: Data, V: Data, B: Data> BroadcastConnectedStream<K, V, B> {
    /// Runs `f` as one keyed operator `uid` with the control stream broadcast into its
    /// second input; its output keeps the key.
    pub fn process<F: KeyedBroadcastProcessFunction<K, V, B>>(self, uid: &str, f: F) -> crate::Stream<K, F::Out> {
        crate::job::connect_broadcast(self.keyed, self.control, uid, BroadcastProcess::boxed(f))
    }
}

mod backend {
    use crate::error::StateError;

    /// (field, value) pairs, ordered by field.
    pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    #[cfg(not(test))]
    pub(super) use imports::*;

    #[cfg(not(test))]
    mod imports {
        use super::{Entries, StateError};
        use crate::wit::weir::dataflow::keyed_state as host;

        pub(crate) fn get(name: &str, field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(host::broadcast_get(name, field)?)
        }
        pub(crate) fn put(name: &str, field: &[u8], value: &[u8]) -> Result<(), StateError> {
            Ok(host::broadcast_put(name, field, value)?)
        }
        pub(crate) fn remove(name: &str, field: &[u8]) -> Result<(), StateError> {
            Ok(host::broadcast_remove(name, field)?)
        }
        pub(crate) fn entries(name: &str) -> Result<Entries, StateError> {
            Ok(host::broadcast_entries(name)?)
        }
    }

    #[cfg(test)]
    pub(super) use fake::*;

    /// The host's copy, as a map per thread (native tests).
    #[cfg(test)]
    mod fake {
        use super::{Entries, StateError};
        use core::cell::RefCell;
        use std::collections::BTreeMap;

        /// (state name, field) -> value.
        type Store = BTreeMap<(String, Vec<u8>), Vec<u8>>;

        thread_local! {
            static MAP: RefCell<Store> = RefCell::default();
        }

        pub(crate) fn get(name: &str, field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(MAP.with_borrow(|m| m.get(&(name.to_string(), field.to_vec())).cloned()))
        }
        pub(crate) fn put(name: &str, field: &[u8], value: &[u8]) -> Result<(), StateError> {
            MAP.with_borrow_mut(|m| m.insert((name.to_string(), field.to_vec()), value.to_vec()));
            Ok(())
        }
        pub(crate) fn remove(name: &str, field: &[u8]) -> Result<(), StateError> {
            MAP.with_borrow_mut(|m| m.remove(&(name.to_string(), field.to_vec())));
            Ok(())
        }
        pub(crate) fn entries(name: &str) -> Result<Entries, StateError> {
            Ok(MAP.with_borrow(|m| m.iter().filter(|((n, _), _)| n == name).map(|((_, f), v)| (f.clone(), v.clone())).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde::Serialize;
    use weir_batch::push_u32;

    use super::*;
    use crate::codec::build::*;
    use crate::time::TestClock;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    /// Control records set a threshold; a keyed value above it comes out.
    struct Above;

    impl KeyedBroadcastProcessFunction<u32, u64, u64> for Above {
        type State = ();
        type Out = u64;
        type RuleKey = ();
        type Rule = u64;

        fn process_element(
            &mut self,
            _ctx: &mut TimerContext<'_, u32, ()>,
            rules: &ReadOnlyBroadcastState<(), u64>,
            value: u64,
            out: &mut Emitter<'_, u64>,
        ) {
            if value > rules.get(&()).unwrap().unwrap_or(u64::MAX) {
                out.emit(value);
            }
        }

        fn process_broadcast_element(&mut self, rules: &mut BroadcastState<(), u64>, threshold: u64, out: &mut BroadcastEmitter<'_, '_, u32, u64>) {
            rules.put(&(), &threshold).unwrap();
            // Acknowledged under key 1 000 (whichever subtask owns it passes it on).
            out.emit(&1_000, threshold);
        }
    }

    #[test]
    fn control_records_change_the_state_the_keyed_side_reads() {
        let mut op: BroadcastProcess<u32, u64, u64, Above> = BroadcastProcess(BroadcastProcess::new(Above).0.with_clock(TestClock::at(0)));
        let key = enc(&7u32);
        let events = || {
            let mut b = keyed(&[(&key, None)], &[(0, 1, &enc(&5u64)), (0, 2, &enc(&50u64))]);
            push_u32(&mut b, 0);
            b
        };
        let o = parse_keyed_output(&op.process(&events(), 0).unwrap(), 1);
        assert!(o.records.is_empty(), "no rule yet: nothing is above it");
        // A control record of another key: plain, no key table.
        let mut control = Vec::new();
        weir_batch::push_record(&mut control, 3, &enc(&99u32), &enc(&10u64));
        push_u32(&mut control, 1);
        let buf = op.process(&control, 0).unwrap();
        let o = weir_batch::parse_output(&buf, None).unwrap();
        let records: Vec<_> = weir_batch::records(o.records).map(|r| r.unwrap()).map(|r| (r.ts, r.key.to_vec(), r.value.to_vec())).collect();
        assert_eq!(records, [(3, enc(&1_000u32), enc(&10u64))], "a control record emits under the key it names, at its time");
        let o = parse_keyed_output(&op.process(&events(), 0).unwrap(), 1);
        assert_eq!(o.records, [(2, key.clone(), enc(&50u64))]);
        assert_eq!(o.states, [None], "no key's state changed");
    }
}
