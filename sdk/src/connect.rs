//! Two streams that meet: [`KeyedCoProcessFunction`] (Flink's), the operator of
//! `KeyedStream::connect(..).process(..)`.
//!
//! Both inputs are keyed by the same key type and partitioned alike, so every record
//! of a key, from either input, reaches one subtask and one value state; timers are
//! the key's too. The host appends to each keyed batch of a two-input operator the
//! input its records came through (`weir_batch::split_input`); everything else is a
//! keyed process function's call ([`Timed`]), so state, timers and side outputs work
//! as they do there.

use core::any::{Any, TypeId};
use core::marker::PhantomData;

use crate::Data;
use crate::codec::decode;
use crate::emit::Emitter;
use crate::error::OpError;
use crate::ops::Operator;
use crate::time::Timer;
use crate::timers::{Cx, Timed, TimedLogic, TimerContext, context};

/// A keyed function of two inputs, Flink's `KeyedCoProcessFunction`: both inputs are
/// keyed by `K`, and `process_element1` / `process_element2` see the records of the
/// first / second with the same [`TimerContext`] of their key: one value state, map
/// states and timers per key, shared by both inputs. `on_timer` runs when a timer set
/// by either fires.
///
/// Records of the two inputs arrive in no particular order relative to each other
/// (each input's own order per producer is kept); event time orders them: the
/// watermark is the minimum over both inputs.
///
/// Use it with [`ConnectedStreams::process`].
pub trait KeyedCoProcessFunction<K, V1, V2>: 'static {
    /// The value state of each key.
    type State: Data;
    /// The values emitted.
    type Out: Data;

    /// Processes one record of the first input.
    fn process_element1(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: V1, out: &mut Emitter<'_, Self::Out>);

    /// Processes one record of the second input.
    fn process_element2(&mut self, ctx: &mut TimerContext<'_, K, Self::State>, value: V2, out: &mut Emitter<'_, Self::Out>);

    /// Runs when `timer`, set for `ctx.key()`, fires. Default: nothing.
    fn on_timer(&mut self, _ctx: &mut TimerContext<'_, K, Self::State>, _timer: Timer, _out: &mut Emitter<'_, Self::Out>) {}
}

/// Two keyed streams with the same key type, waiting for the function that processes
/// them together (Flink's `ConnectedStreams` of two keyed streams).
pub struct ConnectedStreams<K, V1, V2> {
    pub(crate) first: crate::KeyedStream<K, V1>,
    pub(crate) second: crate::KeyedStream<K, V2>,
    /// What the second input's edge says instead of the truth (the host's validation
    /// tests): its partitioning and key type.
    pub(crate) second_edge: Option<(crate::wit::weir::dataflow::plan_types::Partitioning, Option<String>)>,
    /// The state TTL of the operator, shared by both inputs.
    pub(crate) ttl: Option<crate::StateTtl>,
}

impl<K: Data, V1: Data, V2: Data> ConnectedStreams<K, V1, V2> {
    /// Gives the operator's state (shared by both inputs) the time-to-live `ttl`, as
    /// [`KeyedStream::state_ttl`](crate::KeyedStream::state_ttl) does.
    pub fn state_ttl(mut self, ttl: crate::StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Runs `f` over both inputs as one keyed operator `uid`; its output keeps the key.
    pub fn process<F: KeyedCoProcessFunction<K, V1, V2>>(self, uid: &str, f: F) -> crate::Stream<K, F::Out> {
        crate::job::connect(self.first, self.second, self.second_edge, self.ttl, uid, CoProcess::boxed(f))
    }
}

/// The [`TimedLogic`] of a [`KeyedCoProcessFunction`]: decodes each record as the
/// value type of the input the call's batch came through.
struct CoProcessFn<K, V1, V2, F> {
    f: F,
    typed: Vec<K>,
    /// The input of the current call's records.
    input: u32,
    _v: PhantomData<fn(V1, V2)>,
}

impl<K: Data, V1: Data, V2: Data, F: KeyedCoProcessFunction<K, V1, V2>> TimedLogic for CoProcessFn<K, V1, V2, F> {
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
        if self.input == 0 {
            let value: V1 = decode(value, "record value of the first input")?;
            self.f.process_element1(&mut ctx, value, out);
        } else {
            let value: V2 = decode(value, "record value of the second input")?;
            self.f.process_element2(&mut ctx, value, out);
        }
        Ok(())
    }

    fn on_timer(&mut self, cx: Cx<'_, F::State>, timer: Timer, out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        let mut ctx = context(&self.typed, cx, Some(timer))?;
        self.f.on_timer(&mut ctx, timer, out);
        Ok(())
    }
}

/// The operator: splits off the input tag, then runs the keyed call.
struct CoProcess<K, V1, V2, F: KeyedCoProcessFunction<K, V1, V2>>(Timed<CoProcessFn<K, V1, V2, F>>)
where
    K: Data,
    V1: Data,
    V2: Data;

impl<K: Data, V1: Data, V2: Data, F: KeyedCoProcessFunction<K, V1, V2>> CoProcess<K, V1, V2, F> {
    fn boxed(f: F) -> Box<dyn Operator> {
        Box::new(Self::new(f))
    }

    fn new(f: F) -> Self {
        CoProcess(Timed::new(CoProcessFn { f, typed: Vec::new(), input: 0, _v: PhantomData }))
    }
}

/// The operator of `f`, reading time from `clock` (native tests of functions built on
/// connect, e.g. joins).
#[cfg(test)]
pub(crate) fn with_clock<K: Data, V1: Data, V2: Data, F: KeyedCoProcessFunction<K, V1, V2>>(
    f: F,
    clock: std::rc::Rc<dyn crate::time::Clock>,
) -> impl Operator {
    CoProcess(CoProcess::new(f).0.with_clock(clock))
}

impl<K: Data, V1: Data, V2: Data, F: KeyedCoProcessFunction<K, V1, V2>> Operator for CoProcess<K, V1, V2, F> {
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let (batch, through) = weir_batch::split_input(input)?;
        self.0.logic_mut().input = through;
        self.0.process(batch, capacity)
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

    /// Profiles (input 1: a name) and clicks (input 2: a page) per user: a click comes
    /// out with the latest name, or `?`.
    struct Enrich;

    impl KeyedCoProcessFunction<u32, String, u64> for Enrich {
        type State = String;
        type Out = String;

        fn process_element1(&mut self, ctx: &mut TimerContext<'_, u32, String>, name: String, _out: &mut Emitter<'_, String>) {
            ctx.set_state(name);
            ctx.register_event_time_timer(100);
        }

        fn process_element2(&mut self, ctx: &mut TimerContext<'_, u32, String>, page: u64, out: &mut Emitter<'_, String>) {
            let name = ctx.state().cloned().unwrap_or_else(|| "?".into());
            out.emit(format!("{} {name} {page}", ctx.key()));
        }

        fn on_timer(&mut self, ctx: &mut TimerContext<'_, u32, String>, timer: Timer, out: &mut Emitter<'_, String>) {
            out.emit(format!("{} timer {}", ctx.key(), timer.ts));
        }
    }

    #[test]
    fn each_batch_goes_to_the_function_of_its_input_with_the_shared_state() {
        let mut op: CoProcess<u32, String, u64, Enrich> = CoProcess(CoProcess::new(Enrich).0.with_clock(TestClock::at(0)));
        let key = enc(&7u32);
        let mut profiles = keyed(&[(&key, None)], &[(0, 1, &enc(&"ann"))]);
        push_u32(&mut profiles, 0);
        let o = parse_keyed_output(&op.process(&profiles, 0).unwrap(), 1);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [Some(Some(enc(&"ann")))]);
        assert_eq!(o.timers.len(), 1, "the first input set a timer");
        let mut clicks = keyed(&[(&key, Some(&enc(&"ann")))], &[(0, 2, &enc(&3u64)), (0, 3, &enc(&4u64))]);
        push_u32(&mut clicks, 1);
        let o = parse_keyed_output(&op.process(&clicks, 0).unwrap(), 1);
        assert_eq!(o.records, [(2, key.clone(), enc(&"7 ann 3")), (3, key.clone(), enc(&"7 ann 4"))]);
        assert_eq!(o.states, [None], "the second input read the state the first wrote");
        let fired = timer_input(&[(&key, Some(&enc(&"ann")))], &[(0, 100, weir_batch::TimeDomain::Event)]);
        let o = parse_keyed_output(&op.on_timer(&fired, 0).unwrap(), 1);
        assert_eq!(o.records, [(100, key.clone(), enc(&"7 timer 100"))]);
        let untagged = keyed(&[(&key, None)], &[(0, 1, &enc(&"x"))]);
        assert!(op.process(&untagged, 0).is_err(), "a batch without its tag is refused");
    }

    #[test]
    fn both_inputs_share_state_that_expires_under_a_ttl() {
        let clock = TestClock::at(0);
        clock.processing_time.set(1_000);
        let mut op: CoProcess<u32, String, u64, Enrich> = CoProcess(CoProcess::new(Enrich).0.with_clock(clock.clone()));
        assert!(op.set_state_ttl(crate::StateTtl::new(100)));
        let key = enc(&7u32);
        let mut profiles = keyed(&[(&key, None)], &[(0, 1, &enc(&"ann"))]);
        push_u32(&mut profiles, 0);
        let o = parse_keyed_output(&op.process(&profiles, 0).unwrap(), 1);
        let stored = o.states[0].clone().flatten().unwrap();
        assert_eq!(stored[..8], 1_100i64.to_le_bytes(), "the first input's write carries its expiry");
        let clicks = |state: &[u8]| {
            let mut c = keyed(&[(&key, Some(state))], &[(0, 2, &enc(&3u64))]);
            push_u32(&mut c, 1);
            c
        };
        clock.processing_time.set(1_099);
        let o = parse_keyed_output(&op.process(&clicks(&stored), 0).unwrap(), 1);
        assert_eq!(o.records, [(2, key.clone(), enc(&"7 ann 3"))], "the second input reads it while it lives");
        clock.processing_time.set(1_100);
        let o = parse_keyed_output(&op.process(&clicks(&stored), 0).unwrap(), 1);
        assert_eq!(o.records, [(2, key.clone(), enc(&"7 ? 3"))], "and never once expired");
        assert_eq!(o.states, [Some(None)], "the expired state is cleared in the host");
    }
}
