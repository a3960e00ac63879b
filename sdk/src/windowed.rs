//! Keyed windows, built on timers (no host feature of their own): Flink's
//! `WindowedStream` with its event-time and processing-time triggers and allowed
//! lateness.
//!
//! Each key's open windows and their accumulators are the key's value state
//! ([`Panes`]), which travels with the batch. Per record the work is the window (one
//! remainder for tumbling windows), a lateness check against the watermark (read once
//! per batch), finding the pane (the newest first) and updating its accumulator. A
//! window's timers are set when it opens for the key, never per record:
//!
//! - at its `max_timestamp()` it fires: `(window, result)` is emitted with that
//!   timestamp and the key;
//! - with allowed lateness `L`, a second timer at `max_timestamp() + L` drops it; until
//!   then a late record still updates it and fires it again at once, as Flink's
//!   `EventTimeTrigger` does. Without lateness the firing timer drops it too;
//! - a record whose window is past its lateness is dropped and counted, or with
//!   `side_output_late_data` sent as it came (key, timestamp, value bytes) to a side
//!   output; the count is logged when the operator closes.
//!
//! The key's state is cleared when its last window is dropped. Timers are per key and
//! time, so one timer may serve two windows (one firing, another's lateness ending);
//! firing therefore looks at every pane of the key.
//!
//! Session windows merge like Flink's `MergingWindowSet`: a record's window
//! `[ts, ts + gap)` joins every session it meets, their accumulators merge, and the
//! timers of the sessions it replaced move to the merged one.
//!
//! Processing-time windows assign records by the processing time of their batch and
//! fire on processing-time timers; nothing is late in processing time.
//!
//! Costs were measured in fuel (Wasm instructions) per `process` call: with many keys a
//! key's state is decoded and written back about once per record, so the state has its
//! own codec (the postcard layout of `Panes`, read and written by hand, loop-free for
//! the common one-pane integer state), and tumbling windows use arithmetic prepared
//! once per operator instead of checked and saturating operations.

use core::marker::PhantomData;
use core::num::NonZeroU64;

use serde::de::{Deserializer, Visitor};
use serde::ser::{Error as _, Serializer};
use serde::{Deserialize, Serialize};
use weir_batch::{Reader, TimeDomain};

use weir_batch::{begin_len_prefixed, end_len_prefixed};

use crate::Data;
use crate::codec::{
    self, Out, as_varint, decode, encode_error, encode_into, from_varint, is_varint, take, take_varint, unzigzag, varint_word, zigzag,
};
use crate::emit::Emitter;
use crate::error::OpError;
use crate::ops::Operator;
use crate::side;
use crate::time::Timer;
use crate::timers::{Cx, Timed, TimedLogic, TimerChanges};
use crate::window::{Panes, Window, Windows, cleanup_time, is_late};

/// An incremental window aggregate, Flink's `AggregateFunction`: each window keeps one
/// accumulator, records are added to it as they come, and the result is computed when
/// the window fires. `merge` combines the accumulators of session windows that merge.
pub trait AggregateFunction<V>: 'static {
    /// The state of one window (part of the key's value state).
    type Acc: Data;
    /// The result of a window.
    type Out: Data;

    /// The accumulator of a window that has seen no record.
    fn create_accumulator(&self) -> Self::Acc;

    /// Adds one record's value.
    fn add(&self, value: V, acc: &mut Self::Acc);

    /// The result of the window so far.
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;

    /// The accumulator of two merged windows (session windows; never called for
    /// tumbling or sliding windows).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// What a window operator computes per window, on the raw value bytes (so `count`
/// decodes nothing, and sliding windows decode per pane rather than needing `Clone`).
pub(crate) trait WindowFn: 'static {
    /// The accumulator of one window.
    type Acc: Data;
    /// The values emitted.
    type Out: Data;

    /// The accumulator of a window whose first record has `value`.
    fn first(&mut self, value: &[u8]) -> Result<Self::Acc, OpError>;

    /// Adds a record's value.
    fn add(&mut self, acc: &mut Self::Acc, value: &[u8]) -> Result<(), OpError>;

    /// Merges two windows' accumulators, the earlier one first.
    fn merge(&mut self, a: Self::Acc, b: Self::Acc) -> Self::Acc;

    /// Emits the result of `window` for the key with encoded `key`; the emitter is set
    /// to the key and the window's last instant.
    fn emit(&mut self, key: &[u8], window: Window, acc: &mut Self::Acc, out: &mut Emitter<'_, Self::Out>) -> Result<(), OpError>;
}

/// `count`: the number of records per window.
pub(crate) struct CountFn;

impl WindowFn for CountFn {
    type Acc = u64;
    type Out = (Window, u64);

    #[inline(always)]
    fn first(&mut self, _value: &[u8]) -> Result<u64, OpError> {
        Ok(1)
    }

    #[inline(always)]
    fn add(&mut self, acc: &mut u64, _value: &[u8]) -> Result<(), OpError> {
        *acc = acc.wrapping_add(1);
        Ok(())
    }

    fn merge(&mut self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }

    fn emit(&mut self, _key: &[u8], window: Window, acc: &mut u64, out: &mut Emitter<'_, (Window, u64)>) -> Result<(), OpError> {
        out.emit((window, *acc));
        Ok(())
    }
}

/// The accumulator of `reduce`: the reduced value. It sits in an `Option` only so it
/// can move through the user's `FnMut(V, V) -> V` in place; it is `Some` between calls
/// and encoded as the value itself.
pub(crate) struct Reduced<V>(Option<V>);

impl<V: Serialize> Serialize for Reduced<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(v) => v.serialize(s),
            None => Err(S::Error::custom("internal: empty reduce accumulator")),
        }
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Reduced<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        V::deserialize(d).map(|v| Reduced(Some(v)))
    }
}

/// `reduce` and `sum`: the window's first value, combined with each later one.
pub(crate) struct ReduceFn<V, F> {
    f: F,
    _v: PhantomData<fn(V) -> V>,
}

impl<V: Data, F: FnMut(V, V) -> V + 'static> ReduceFn<V, F> {
    pub(crate) fn new(f: F) -> Self {
        ReduceFn { f, _v: PhantomData }
    }
}

impl<V: Data, F: FnMut(V, V) -> V + 'static> WindowFn for ReduceFn<V, F> {
    type Acc = Reduced<V>;
    type Out = (Window, V);

    fn first(&mut self, value: &[u8]) -> Result<Reduced<V>, OpError> {
        Ok(Reduced(Some(decode(value, "record value")?)))
    }

    fn add(&mut self, acc: &mut Reduced<V>, value: &[u8]) -> Result<(), OpError> {
        let value: V = decode(value, "record value")?;
        acc.0 = Some(match acc.0.take() {
            Some(prev) => (self.f)(prev, value),
            None => value,
        });
        Ok(())
    }

    fn merge(&mut self, a: Reduced<V>, b: Reduced<V>) -> Reduced<V> {
        Reduced(match (a.0, b.0) {
            (Some(a), Some(b)) => Some((self.f)(a, b)),
            (a, b) => a.or(b),
        })
    }

    fn emit(&mut self, _key: &[u8], window: Window, acc: &mut Reduced<V>, out: &mut Emitter<'_, (Window, V)>) -> Result<(), OpError> {
        // The value moves into the emitted pair and back: no `Clone` needed, and the
        // window may stay open (allowed lateness).
        if let Some(value) = acc.0.take() {
            let pair = (window, value);
            out.emit_ref(&pair);
            acc.0 = Some(pair.1);
        }
        Ok(())
    }
}

/// `aggregate`: a user's [`AggregateFunction`].
pub(crate) struct AggregateFn<V, A> {
    f: A,
    _v: PhantomData<fn(V)>,
}

impl<V: Data, A: AggregateFunction<V>> AggregateFn<V, A> {
    pub(crate) fn new(f: A) -> Self {
        AggregateFn { f, _v: PhantomData }
    }
}

impl<V: Data, A: AggregateFunction<V>> WindowFn for AggregateFn<V, A> {
    type Acc = A::Acc;
    type Out = (Window, A::Out);

    fn first(&mut self, value: &[u8]) -> Result<A::Acc, OpError> {
        let mut acc = self.f.create_accumulator();
        self.add(&mut acc, value)?;
        Ok(acc)
    }

    fn add(&mut self, acc: &mut A::Acc, value: &[u8]) -> Result<(), OpError> {
        self.f.add(decode(value, "record value")?, acc);
        Ok(())
    }

    fn merge(&mut self, a: A::Acc, b: A::Acc) -> A::Acc {
        self.f.merge(a, b)
    }

    fn emit(&mut self, _key: &[u8], window: Window, acc: &mut A::Acc, out: &mut Emitter<'_, Self::Out>) -> Result<(), OpError> {
        out.emit((window, self.f.get_result(acc)));
        Ok(())
    }
}

/// The records of a window for a full-window function: each value's encoding,
/// length-prefixed, one after another. Adding a record is one copy and decodes nothing;
/// the values are decoded when the window fires. Encoded as one byte string.
#[derive(Debug, Default)]
pub(crate) struct Values(Vec<u8>);

impl Values {
    fn push(&mut self, value: &[u8]) {
        weir_batch::push_len_prefixed(&mut self.0, value);
    }

    fn decode<V: Data>(&self) -> Result<Vec<V>, OpError> {
        let mut r = Reader::new(&self.0);
        let mut values = Vec::new();
        while !r.is_empty() {
            values.push(decode(r.len_prefixed("window value")?, "window value")?);
        }
        Ok(values)
    }
}

impl Serialize for Values {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;

        impl Visitor<'_> for BytesVisitor {
            type Value = Values;

            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("the bytes of a window's values")
            }

            fn visit_bytes<E>(self, v: &[u8]) -> Result<Values, E> {
                Ok(Values(v.to_vec()))
            }

            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Values, E> {
                Ok(Values(v))
            }
        }

        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// `process`: a user's function over all the values of a window.
pub(crate) struct ProcessWindowFn<K, V, W, F> {
    f: F,
    _t: PhantomData<fn(K, V) -> W>,
}

impl<K, V, W, F> ProcessWindowFn<K, V, W, F> {
    pub(crate) fn new(f: F) -> Self {
        ProcessWindowFn { f, _t: PhantomData }
    }
}

impl<K, V, W, F> WindowFn for ProcessWindowFn<K, V, W, F>
where
    K: Data,
    V: Data,
    W: Data,
    F: FnMut(&K, Window, Vec<V>, &mut Emitter<'_, W>) + 'static,
{
    type Acc = Values;
    type Out = W;

    fn first(&mut self, value: &[u8]) -> Result<Values, OpError> {
        let mut values = Values::default();
        values.push(value);
        Ok(values)
    }

    fn add(&mut self, acc: &mut Values, value: &[u8]) -> Result<(), OpError> {
        acc.push(value);
        Ok(())
    }

    fn merge(&mut self, mut a: Values, b: Values) -> Values {
        a.0.extend_from_slice(&b.0);
        a
    }

    fn emit(&mut self, key: &[u8], window: Window, acc: &mut Values, out: &mut Emitter<'_, W>) -> Result<(), OpError> {
        // Decoded here, when the window fires, not per batch.
        let key: K = decode(key, "key")?;
        (self.f)(&key, window, acc.decode()?, out);
        Ok(())
    }
}

/// Decodes a key's window state, laid out as [`Panes`]' serde impls write it: a count,
/// then per pane the zigzag start, the length and the accumulator, all postcard. Read by
/// hand because it runs once per key and batch, which with many keys is about once per
/// record: loop-free varints, no serde visitors, no allocation for one pane.
#[inline(always)]
fn decode_panes<A: Data>(bytes: &[u8]) -> Result<Panes<A>, OpError> {
    if let Some(panes) = decode_one_pane(bytes) {
        return Ok(panes);
    }
    decode_panes_general(bytes)
}

/// The common state, one pane with an integer accumulator (a count, a sum), read as if
/// zero-padded: each varint is then one 8-byte load without a loop, since the padding
/// ends any varint. `None` for any other state, or anything unexpected, which
/// the general path then reads (and names, if it is malformed).
#[inline(always)]
fn decode_one_pane<A: Data>(bytes: &[u8]) -> Option<Panes<A>> {
    // Count, and three varints of at most 8 bytes; then room for one 8-byte load past the end.
    const MAX: usize = 1 + 3 * 8;
    if !is_varint::<A>() || bytes.len() > MAX || bytes.first() != Some(&1) {
        return None;
    }
    let word = |at: usize| -> Option<(u64, usize)> {
        let x = load_padded(bytes, at);
        let stops = !x & 0x8080_8080_8080_8080;
        // Longer varints (values of 2^56 and more) take the general path.
        let n = (stops != 0).then(|| (stops.trailing_zeros() / 8) as usize + 1)?;
        Some((codec::unspread(x & (u64::MAX >> (64 - 8 * n)) & 0x7f7f_7f7f_7f7f_7f7f), n))
    };
    let (start, n1) = word(1)?;
    let (len, n2) = word(1 + n1)?;
    let (acc, n3) = word(1 + n1 + n2)?;
    if 1 + n1 + n2 + n3 != bytes.len() {
        return None;
    }
    let start = unzigzag(start);
    Some(Panes::one((Window { start, end: start.wrapping_add(len as i64) }, from_varint::<A>(acc)?)))
}

/// The 8 bytes of `bytes` at `at`, as if `bytes` were followed by zeros. Reading in
/// place: a variable-length copy into a padded buffer is a `memory.copy`, which
/// wasmtime runs as a call out of the guest, and this runs once per key and batch.
#[inline(always)]
fn load_padded(bytes: &[u8], at: usize) -> u64 {
    if let Some(word) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        return u64::from_le_bytes(*word);
    }
    // Fewer than 8 bytes left: at most three fixed-size loads, no loop.
    let tail = bytes.get(at..).unwrap_or_default();
    let (mut x, mut i) = (0u64, 0);
    if let Some(w) = tail.first_chunk::<4>() {
        x = u64::from(u32::from_le_bytes(*w));
        i = 4;
    }
    if let Some(w) = tail.get(i..).and_then(<[u8]>::first_chunk::<2>) {
        x |= u64::from(u16::from_le_bytes(*w)) << (8 * i);
        i += 2;
    }
    if let Some(&b) = tail.get(i) {
        x |= u64::from(b) << (8 * i);
    }
    x
}

/// Any window state, varint by varint.
fn decode_panes_general<A: Data>(bytes: &[u8]) -> Result<Panes<A>, OpError> {
    let Some((count, mut rest)) = take_varint(bytes) else { return Err(bad_panes(bytes.len())) };
    let mut panes = Panes::new();
    // Every pane takes bytes, so a hostile count ends at the end of the bytes.
    for _ in 0..count {
        let Some((start, after)) = take_varint(rest) else { return Err(bad_panes(bytes.len())) };
        let Some((len, after)) = take_varint(after) else { return Err(bad_panes(bytes.len())) };
        let (acc, after) = take::<A>(after, "window state")?;
        let start = unzigzag(start);
        panes.push((Window { start, end: start.wrapping_add(len as i64) }, acc));
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad_panes(bytes.len()));
    }
    Ok(panes)
}

/// Appends a key's window state, length-prefixed, in the layout of [`decode_panes`].
#[inline(always)]
fn put_panes<A: Data>(out: &mut Out, panes: &Panes<A>) -> Result<(), OpError> {
    // The common state, one pane with an integer accumulator: its varints as words
    // into one window of the output (one capacity check, no loop).
    if let [(w, acc)] = panes.as_slice()
        && let Some(acc) = as_varint(acc)
        && let (Some((s, ns)), Some((l, nl)), Some((a, na))) =
            (varint_word(zigzag(w.start)), varint_word(w.end.wrapping_sub(w.start) as u64), varint_word(acc))
    {
        out.put_window::<32>(|win| {
            let body = 1 + ns + nl + na;
            let mut put = |at: usize, word: u64| {
                if let Some(dst) = win.get_mut(at..at + 8) {
                    dst.copy_from_slice(&word.to_le_bytes());
                }
            };
            put(0, (body as u64) | (1 << 32));
            put(5, s);
            put(5 + ns, l);
            put(5 + ns + nl, a);
            4 + body
        });
        return Ok(());
    }
    let at = begin_len_prefixed(out);
    let panes = panes.as_slice();
    out.put_varint(panes.len() as u64);
    for (w, acc) in panes {
        out.put_varint(zigzag(w.start));
        out.put_varint(w.end.wrapping_sub(w.start) as u64);
        encode_into(out, acc).map_err(encode_error::<A>)?;
    }
    end_len_prefixed(out, at);
    Ok(())
}

#[cold]
#[inline(never)]
fn bad_panes(len: usize) -> OpError {
    OpError::BadInput(format!("key state: {len} bytes that are no window table"))
}

/// Tumbling-window arithmetic prepared once per operator. Per record it is one unsigned
/// remainder by a divisor known not to be zero and no overflow checks: in Wasm, every
/// check and saturation is instructions on the hottest path. Times within ±2^61 ms (73
/// million years) cannot overflow it; others take `Windows::single`'s checked path.
#[derive(Debug, Clone, Copy)]
struct Tumbling {
    size: NonZeroU64,
    offset: i64,
    /// A multiple of `size` above 2^61: added to `ts - offset` it makes the dividend
    /// non-negative without changing the remainder.
    bias: u64,
}

/// The range of times (and bound of sizes and offsets) the prepared arithmetic covers.
const SAFE: i64 = 1 << 61;

impl Tumbling {
    fn new(windows: &Windows) -> Option<Self> {
        let Windows::Tumbling { size, offset } = *windows else { return None };
        if !(1..SAFE / 2).contains(&size) || !(-SAFE / 2..SAFE / 2).contains(&offset) {
            return None;
        }
        let size = NonZeroU64::new(size as u64)?;
        Some(Tumbling { size, offset, bias: (SAFE as u64 / size.get() + 1) * size.get() })
    }

    /// The window of `ts`, unless `ts` is outside the covered range.
    #[inline(always)]
    fn window(&self, ts: i64) -> Option<Window> {
        if !(-SAFE..SAFE).contains(&ts) {
            return None;
        }
        // |ts - offset| < 2^61 + 2^60, so the biased dividend lies in [0, 2^63).
        let rem = ((ts - self.offset) as u64).wrapping_add(self.bias) % self.size;
        let start = ts - rem as i64;
        Some(Window { start, end: start + self.size.get() as i64 })
    }
}

/// A keyed window operator: assigns records to windows, keeps their accumulators in the
/// key's value state, and fires and drops them on timers.
pub(crate) struct WindowOp<F> {
    windows: Windows,
    /// `windows` prepared, if they are tumbling.
    tumbling: Option<Tumbling>,
    domain: TimeDomain,
    /// Allowed lateness (ms); 0 in processing time.
    lateness: i64,
    f: F,
    /// Records that came after their window's allowed lateness: dropped, or sent to
    /// `late_output`.
    late: u64,
    /// The side output for those records, if the plan asked for one.
    late_output: Option<String>,
    /// Scratch: the windows of a record (sliding windows).
    assigned: Vec<Window>,
    /// Scratch: the sessions a merge replaced.
    replaced: Vec<Window>,
}

impl<F: WindowFn> WindowOp<F> {
    pub(crate) fn new(windows: Windows, domain: TimeDomain, lateness: i64, f: F) -> Self {
        WindowOp {
            windows,
            tumbling: Tumbling::new(&windows),
            domain,
            lateness,
            f,
            late: 0,
            late_output: None,
            assigned: Vec::new(),
            replaced: Vec::new(),
        }
    }

    pub(crate) fn boxed(windows: Windows, domain: TimeDomain, lateness: i64, late_output: Option<String>, f: F) -> Box<dyn Operator> {
        Box::new(Timed::new(WindowOp { late_output, ..Self::new(windows, domain, lateness, f) }))
    }

    /// A record came after its window's allowed lateness: counted, and passed on as it
    /// came if late records have a side output.
    #[cold]
    fn too_late(&mut self, cx: &Cx<'_, Panes<F::Acc>>, value: &[u8]) {
        self.late += 1;
        if let Some(name) = &self.late_output {
            side::emit_raw(name, cx.ts, cx.key, value);
        }
    }

    /// Records dropped as late so far.
    #[cfg(test)]
    pub(crate) fn late(&self) -> u64 {
        self.late
    }

    /// The timers an open window `w` has pending at `watermark`: the one firing it, unless
    /// its time has passed (then it fired already, or fires at once), and with allowed
    /// lateness the one dropping it. Without lateness the firing timer drops it too.
    #[inline(always)]
    fn pending(&self, w: &Window, watermark: i64) -> [Option<i64>; 2] {
        let fire = w.max_timestamp();
        let drop = cleanup_time(w, self.lateness);
        [(fire > watermark).then_some(fire), (drop != fire).then_some(drop)]
    }

    /// Adds a record to window `w` of a non-merging assigner; false if `w` is past its
    /// allowed lateness (the record does not count there).
    #[inline(always)]
    fn add(
        &mut self,
        cx: &mut Cx<'_, Panes<F::Acc>>,
        w: Window,
        watermark: i64,
        value: &[u8],
        out: &mut Emitter<'_, F::Out>,
    ) -> Result<bool, OpError> {
        // The hot path: the window is open for the key. An open window is never past its
        // lateness (its last timer drops it), so only the accumulator changes.
        if let Some(panes) = cx.state.as_mut()
            && let Ok(index) = panes.find(w.start)
        {
            if let Some((_, acc)) = panes.as_mut_slice().get_mut(index) {
                self.f.add(acc, value)?;
            }
            *cx.changed = true;
            // Past the watermark but within the allowed lateness: fire again with this
            // record. (Without lateness an open window is never behind the watermark.)
            if self.lateness > 0 && w.max_timestamp() <= watermark {
                self.fire(panes, index, cx.key, out)?;
            }
            return Ok(true);
        }
        if is_late(&w, self.lateness, watermark) {
            return Ok(false);
        }
        *cx.changed = true;
        let panes = cx.state.get_or_insert_with(Panes::new);
        let index = panes.find(w.start).unwrap_or_else(|index| index);
        panes.insert(index, (w, self.f.first(value)?));
        // A window new for the key: its timers, once.
        for ts in self.pending(&w, watermark).into_iter().flatten() {
            cx.timers.push(true, self.domain, cx.key_index, ts);
        }
        if w.max_timestamp() <= watermark {
            // Opened late, within the allowed lateness: fire at once.
            self.fire(panes, index, cx.key, out)?;
        }
        Ok(true)
    }

    /// Adds a record to its session `w`, merging the sessions it meets; false if the
    /// merged session is past its allowed lateness. Lateness is the merged window's, as
    /// in Flink: a record that joins an open session counts.
    fn add_to_session(
        &mut self,
        cx: &mut Cx<'_, Panes<F::Acc>>,
        w: Window,
        watermark: i64,
        value: &[u8],
        out: &mut Emitter<'_, F::Out>,
    ) -> Result<bool, OpError> {
        let (run, cover) = match cx.state.as_ref() {
            Some(panes) => panes.session_run(w),
            None => (0..0, w),
        };
        if is_late(&cover, self.lateness, watermark) {
            return Ok(false);
        }
        *cx.changed = true;
        let panes = cx.state.get_or_insert_with(Panes::new);
        let index = if run.is_empty() {
            panes.insert(run.start, (cover, self.f.first(value)?));
            for ts in self.pending(&cover, watermark).into_iter().flatten() {
                cx.timers.push(true, self.domain, cx.key_index, ts);
            }
            run.start
        } else {
            self.replaced.clear();
            let f = &mut self.f;
            let index = panes.merge_run(run, cover, |a, b| f.merge(a, b), &mut self.replaced);
            if let Some((_, acc)) = panes.as_mut_slice().get_mut(index) {
                self.f.add(acc, value)?;
            }
            if !self.replaced.is_empty() {
                self.move_timers(cx.timers, cx.key_index, panes, cover, watermark);
            }
            index
        };
        if cover.max_timestamp() <= watermark {
            self.fire(panes, index, cx.key, out)?;
        }
        Ok(true)
    }

    /// After sessions merged into `cover`: deletes the replaced sessions' timers that no
    /// open window still needs (one timer per key and time may serve two windows), and
    /// sets the timers of `cover` that no replaced session had already.
    fn move_timers(&self, timers: &mut TimerChanges, key_index: u32, panes: &Panes<F::Acc>, cover: Window, watermark: i64) {
        let needed = |ts: i64| panes.as_slice().iter().any(|(p, _)| self.pending(p, watermark).contains(&Some(ts)));
        for r in &self.replaced {
            for ts in self.pending(r, watermark).into_iter().flatten() {
                if !needed(ts) {
                    timers.push(false, self.domain, key_index, ts);
                }
            }
        }
        for ts in self.pending(&cover, watermark).into_iter().flatten() {
            if !self.replaced.iter().any(|r| self.pending(r, watermark).contains(&Some(ts))) {
                timers.push(true, self.domain, key_index, ts);
            }
        }
    }

    /// Emits the result of pane `index`, with the window's last instant as timestamp.
    fn fire(&mut self, panes: &mut Panes<F::Acc>, index: usize, key: &[u8], out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        if let Some((w, acc)) = panes.as_mut_slice().get_mut(index) {
            out.set_ts(w.max_timestamp());
            self.f.emit(key, *w, acc, out)?;
        }
        Ok(())
    }
}

impl<F: WindowFn> TimedLogic for WindowOp<F> {
    type State = Panes<F::Acc>;
    type Out = F::Out;

    #[inline(always)]
    fn decode_state(bytes: &[u8]) -> Result<Panes<F::Acc>, OpError> {
        decode_panes(bytes)
    }

    #[inline(always)]
    fn put_state(out: &mut Out, state: &Panes<F::Acc>) -> Result<(), OpError> {
        put_panes(out, state)
    }

    #[inline(always)]
    fn on_record(&mut self, mut cx: Cx<'_, Self::State>, value: &[u8], out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        // In processing time the batch's clock places the record and nothing is late.
        let (time, watermark) = match self.domain {
            TimeDomain::Event => (cx.ts, cx.clock.watermark()),
            TimeDomain::Processing => (cx.clock.processing_time(), i64::MIN),
        };
        if let Some(tumbling) = &self.tumbling
            && let Some(w) = tumbling.window(time)
        {
            if !self.add(&mut cx, w, watermark, value, out)? {
                self.too_late(&cx, value);
            }
            return Ok(());
        }
        let on_time = match (self.windows, self.windows.single(time)) {
            (Windows::Session { .. }, Some(w)) => self.add_to_session(&mut cx, w, watermark, value, out)?,
            (_, Some(w)) => self.add(&mut cx, w, watermark, value, out)?,
            (_, None) => {
                let mut assigned = core::mem::take(&mut self.assigned);
                assigned.clear();
                self.windows.assign(time, &mut assigned);
                let mut on_time = false;
                for w in &assigned {
                    on_time |= self.add(&mut cx, *w, watermark, value, out)?;
                }
                self.assigned = assigned;
                on_time
            }
        };
        if !on_time {
            self.too_late(&cx, value);
        }
        Ok(())
    }

    fn on_timer(&mut self, cx: Cx<'_, Self::State>, timer: Timer, out: &mut Emitter<'_, F::Out>) -> Result<(), OpError> {
        // This operator sets timers in its own domain only.
        if timer.domain != self.domain {
            return Ok(());
        }
        let Some(panes) = cx.state.as_mut() else { return Ok(()) };
        let t = timer.ts;
        for index in 0..panes.as_slice().len() {
            if panes.as_slice().get(index).is_some_and(|(w, _)| w.max_timestamp() == t) {
                self.fire(panes, index, cx.key, out)?;
            }
        }
        // Windows whose allowed lateness is over are done: without lateness, the ones
        // that just fired.
        let before = panes.as_slice().len();
        let lateness = self.lateness;
        panes.retain(|w| cleanup_time(w, lateness) > t);
        let (after, empty) = (panes.as_slice().len(), panes.is_empty());
        if after != before {
            *cx.changed = true;
            if empty {
                *cx.state = None;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), OpError> {
        match (&self.late_output, self.late) {
            (_, 0) => {}
            (Some(name), late) => crate::log::info(&format!(
                "window: {late} records came after their window's allowed lateness, sent to side output {name:?} (dropped by the host if nothing reads it)"
            )),
            (None, late) => crate::log::warn(&format!("window: dropped {late} records that came after their window's allowed lateness")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::rc::Rc;

    use weir_batch::TimerChange;

    use super::*;
    use crate::codec::build::*;
    use crate::time::TestClock;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    #[test]
    fn padded_loads_read_zeros_past_the_end() {
        let bytes: Vec<u8> = (1..=20).collect();
        for len in 0..=bytes.len() {
            for at in 0..=len + 2 {
                let mut padded = [0u8; 8];
                for (i, b) in padded.iter_mut().enumerate() {
                    *b = bytes[..len].get(at + i).copied().unwrap_or(0);
                }
                assert_eq!(load_padded(&bytes[..len], at), u64::from_le_bytes(padded), "len {len} at {at}");
            }
        }
    }

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    fn set(key_index: u32, ts: i64) -> TimerChange {
        TimerChange { set: true, domain: TimeDomain::Event, key_index, ts }
    }

    fn del(key_index: u32, ts: i64) -> TimerChange {
        TimerChange { set: false, domain: TimeDomain::Event, key_index, ts }
    }

    /// A window operator on a test clock, fed batches as the host would.
    struct Harness<F: WindowFn> {
        op: Timed<WindowOp<F>>,
        clock: Rc<TestClock>,
    }

    impl<F: WindowFn> Harness<F> {
        fn new(windows: Windows, lateness: i64, f: F) -> Self {
            Self::in_domain(windows, TimeDomain::Event, lateness, f)
        }

        fn in_domain(windows: Windows, domain: TimeDomain, lateness: i64, f: F) -> Self {
            let clock = TestClock::at(i64::MIN);
            let op = Timed::new(WindowOp::new(windows, domain, lateness, f)).with_clock(clock.clone());
            Harness { op, clock }
        }

        /// `process` at watermark `watermark`.
        fn process(&mut self, watermark: i64, keys: &[(&[u8], Option<&[u8]>)], records: &[(u32, i64, &[u8])]) -> KeyedOutput {
            self.clock.watermark.set(watermark);
            let out = self.op.process(&keyed(keys, records), 0).unwrap();
            parse_keyed_output(&out, keys.len())
        }

        /// `on-timer` with event-time timers `(key-index, ts)`.
        fn fire(&mut self, keys: &[(&[u8], Option<&[u8]>)], timers: &[(u32, i64)]) -> KeyedOutput {
            let timers: Vec<_> = timers.iter().map(|&(k, ts)| (k, ts, TimeDomain::Event)).collect();
            let out = self.op.on_timer(&timer_input(keys, &timers), 0).unwrap();
            parse_keyed_output(&out, keys.len())
        }

        fn late(&self) -> u64 {
            self.op.logic().late()
        }
    }

    /// The panes a state update set.
    fn panes<A: Data + Clone>(update: &Option<Option<Vec<u8>>>) -> Vec<(Window, A)> {
        let bytes = update.as_ref().expect("a state update").as_ref().expect("a set state");
        postcard::from_bytes::<Panes<A>>(bytes).unwrap().as_slice().to_vec()
    }

    /// The encoded state of these panes.
    fn state<A: Data>(panes: Vec<(Window, A)>) -> Vec<u8> {
        let mut p = Panes::new();
        for (i, pane) in panes.into_iter().enumerate() {
            p.insert(i, pane);
        }
        enc(&p)
    }

    #[test]
    fn tumbling_count_sets_one_timer_per_window_and_fires_on_it() {
        let mut h = Harness::new(Windows::tumbling(1000), 0, CountFn);
        let (a, b) = (enc(&"a"), enc(&"b"));
        let o = h.process(i64::MIN, &[(&a, None), (&b, None)], &[(0, 100, b""), (0, 200, b""), (1, 1500, b""), (0, 1100, b"")]);
        assert!(o.records.is_empty(), "nothing fires before the watermark");
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 1000), 2), (w(1000, 2000), 1)]);
        assert_eq!(panes::<u64>(&o.states[1]), [(w(1000, 2000), 1)]);
        assert_eq!(o.timers, [set(0, 999), set(1, 1999), set(0, 1999)], "one timer per new window, not per record");

        // More records for open windows: no timers, so no trailer at all.
        let sa = state(vec![(w(0, 1000), 2u64), (w(1000, 2000), 1)]);
        let o = h.process(500, &[(&a, Some(&sa))], &[(0, 900, b""), (0, 1999, b"")]);
        assert!(!o.has_trailer);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 1000), 3), (w(1000, 2000), 2)]);

        // The first window's timer: its count, at its last instant; the other stays.
        let sa = state(vec![(w(0, 1000), 3u64), (w(1000, 2000), 2)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 999)]);
        assert_eq!(o.records, [(999, a.clone(), enc(&(w(0, 1000), 3u64)))]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(1000, 2000), 2)]);
        assert!(!o.has_trailer);

        // A record for the fired window is late (no allowed lateness): dropped, counted.
        let sa = state(vec![(w(1000, 2000), 2u64)]);
        let o = h.process(999, &[(&a, Some(&sa))], &[(0, 500, b"")]);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [None]);
        assert_eq!(h.late(), 1);

        // The last window fires and the key's state goes.
        let o = h.fire(&[(&a, Some(&sa)), (&b, Some(&state(vec![(w(1000, 2000), 1u64)])))], &[(0, 1999), (1, 1999)]);
        assert_eq!(o.records, [(1999, a.clone(), enc(&(w(1000, 2000), 2u64))), (1999, b.clone(), enc(&(w(1000, 2000), 1u64)))]);
        assert_eq!(o.states, [Some(None), Some(None)]);
    }

    #[test]
    fn allowed_lateness_refires_late_records_and_drops_later_ones() {
        let mut h = Harness::new(Windows::tumbling(1000), 500, ReduceFn::new(|x: u64, y: u64| x + y));
        let (a, b) = (enc(&"a"), enc(&"b"));
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 100, &enc(&5u64))]);
        assert_eq!(o.timers, [set(0, 999), set(0, 1499)], "a firing timer and a cleanup timer");

        // Firing keeps the window for its lateness: the state is unchanged.
        let sa = state(vec![(w(0, 1000), 5u64)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 999)]);
        assert_eq!(o.records, [(999, a.clone(), enc(&(w(0, 1000), 5u64)))]);
        assert_eq!(o.states, [None]);

        // Late but within lateness: updated and fired at once, no new timers. A key
        // that never had the window opens it late: fired at once, cleanup timer only.
        let o = h.process(1200, &[(&a, Some(&sa)), (&b, None)], &[(0, 300, &enc(&2u64)), (1, 400, &enc(&7u64)), (0, 50, &enc(&1u64))]);
        assert_eq!(
            o.records,
            [(999, a.clone(), enc(&(w(0, 1000), 7u64))), (999, b.clone(), enc(&(w(0, 1000), 7u64))), (999, a.clone(), enc(&(w(0, 1000), 8u64)))]
        );
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 1000), 8)]);
        assert_eq!(o.timers, [set(1, 1499)]);
        assert_eq!(h.late(), 0);

        // The cleanup timer drops the window without firing it.
        let sa = state(vec![(w(0, 1000), 8u64)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 1499)]);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [Some(None)]);

        // Past the lateness: dropped and counted, the key keeps no state.
        let o = h.process(1499, &[(&a, None)], &[(0, 700, &enc(&1u64))]);
        assert!(o.records.is_empty());
        assert_eq!(o.states, [None]);
        assert!(!o.has_trailer);
        assert_eq!(h.late(), 1);
    }

    #[test]
    fn one_timer_can_fire_one_window_and_drop_another() {
        // Lateness of one window size: window 0's cleanup is window 1's firing time.
        let mut h = Harness::new(Windows::tumbling(1000), 1000, CountFn);
        let a = enc(&"a");
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 10, b""), (0, 1010, b"")]);
        assert_eq!(o.timers, [set(0, 999), set(0, 1999), set(0, 2999)], "1999 is set once, for both windows");
        let sa = state(vec![(w(0, 1000), 1u64), (w(1000, 2000), 1)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 1999)]);
        assert_eq!(o.records, [(1999, a.clone(), enc(&(w(1000, 2000), 1u64)))]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(1000, 2000), 1)]);
    }

    #[test]
    fn sessions_merge_and_move_their_timers() {
        let mut h = Harness::new(Windows::session(100), 0, CountFn);
        let a = enc(&"a");
        let mut st: Option<Vec<u8>> = None;
        let mut step = |h: &mut Harness<CountFn>, ts: i64| {
            let o = h.process(i64::MIN, &[(&a, st.as_deref())], &[(0, ts, b"")]);
            if let Some(Some(s)) = &o.states[0] {
                st = Some(s.clone());
            }
            (o.timers, postcard::from_bytes::<Panes<u64>>(st.as_deref().unwrap()).unwrap().as_slice().to_vec())
        };
        assert_eq!(step(&mut h, 0), (vec![set(0, 99)], vec![(w(0, 100), 1)]));
        assert_eq!(step(&mut h, 50), (vec![del(0, 99), set(0, 149)], vec![(w(0, 150), 2)]), "an extended session moves its timer");
        assert_eq!(step(&mut h, 120), (vec![del(0, 149), set(0, 219)], vec![(w(0, 220), 3)]));
        assert_eq!(step(&mut h, 300), (vec![set(0, 399)], vec![(w(0, 220), 3), (w(300, 400), 1)]));
        assert_eq!(step(&mut h, 10), (vec![], vec![(w(0, 220), 4), (w(300, 400), 1)]), "inside a session: no timer changes");
        // [200, 300) bridges both: one session, one timer at its end (399 stays set).
        assert_eq!(step(&mut h, 200), (vec![del(0, 219)], vec![(w(0, 400), 6)]));
        let o = h.fire(&[(&a, st.as_deref())], &[(0, 399)]);
        assert_eq!(o.records, [(399, a.clone(), enc(&(w(0, 400), 6u64)))]);
        assert_eq!(o.states, [Some(None)]);
    }

    #[test]
    fn session_merges_keep_timers_other_windows_need() {
        // With lateness 50 a session has a firing and a cleanup timer.
        let mut h = Harness::new(Windows::session(100), 50, CountFn);
        let a = enc(&"a");
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 0, b"")]);
        assert_eq!(o.timers, [set(0, 99), set(0, 149)]);
        // [0, 150) fires at 149, which [0, 100) needed for its cleanup: kept, not reset.
        let sa = state(vec![(w(0, 100), 1u64)]);
        let o = h.process(i64::MIN, &[(&a, Some(&sa))], &[(0, 50, b"")]);
        assert_eq!(o.timers, [del(0, 99), set(0, 199)]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 150), 2)]);
    }

    #[test]
    fn a_late_record_joining_an_open_session_counts() {
        let mut h = Harness::new(Windows::session(100), 0, CountFn);
        let a = enc(&"a");
        // At watermark 150, [50, 150) alone would be late; merged into [100, 200) it is not.
        let sa = state(vec![(w(100, 200), 1u64)]);
        let o = h.process(150, &[(&a, Some(&sa))], &[(0, 50, b""), (0, -500, b"")]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(50, 200), 2)]);
        assert!(o.timers.is_empty() && !o.has_trailer, "the merged session ends where the old one did");
        assert_eq!(h.late(), 1, "the record at -500 meets no session");
    }

    struct Average;

    impl AggregateFunction<u64> for Average {
        type Acc = (u64, u64);
        type Out = f64;

        fn create_accumulator(&self) -> (u64, u64) {
            (0, 0)
        }

        fn add(&self, value: u64, acc: &mut (u64, u64)) {
            acc.0 += value;
            acc.1 += 1;
        }

        fn get_result(&self, acc: &(u64, u64)) -> f64 {
            acc.0 as f64 / acc.1 as f64
        }

        fn merge(&self, a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
            (a.0 + b.0, a.1 + b.1)
        }
    }

    #[test]
    fn aggregate_merges_accumulators_of_merged_sessions() {
        let mut h = Harness::new(Windows::session(100), 0, AggregateFn::new(Average));
        let a = enc(&7u32);
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 0, &enc(&10u64)), (0, 200, &enc(&20u64)), (0, 100, &enc(&30u64))]);
        assert_eq!(panes::<(u64, u64)>(&o.states[0]), [(w(0, 300), (60, 3))]);
        assert_eq!(o.timers, [set(0, 99), set(0, 299), del(0, 99)]);
        let o = h.fire(&[(&a, Some(&state(vec![(w(0, 300), (60u64, 3u64))])))], &[(0, 299)]);
        assert_eq!(o.records, [(299, a.clone(), enc(&(w(0, 300), 20.0f64)))]);
    }

    #[test]
    fn sliding_windows_count_a_record_in_each() {
        let mut h = Harness::new(Windows::sliding(1000, 500), 0, CountFn);
        let a = enc(&"a");
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 700, b""), (0, 800, b""), (0, 1200, b"")]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 1000), 2), (w(500, 1500), 3), (w(1000, 2000), 1)]);
        assert_eq!(o.timers, [set(0, 999), set(0, 1499), set(0, 1999)]);
        let sa = state(vec![(w(0, 1000), 2u64), (w(500, 1500), 3), (w(1000, 2000), 1)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 999), (0, 1499)]);
        assert_eq!(o.records, [(999, a.clone(), enc(&(w(0, 1000), 2u64))), (1499, a.clone(), enc(&(w(500, 1500), 3u64)))]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(1000, 2000), 1)]);
        // At watermark 999, after that timer, a record at 600 is late for [0, 1000) but
        // counts in [500, 1500).
        let fired = state(vec![(w(500, 1500), 3u64), (w(1000, 2000), 1)]);
        let o = h.process(999, &[(&a, Some(&fired))], &[(0, 600, b"")]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(500, 1500), 4), (w(1000, 2000), 1)]);
        assert!(o.timers.is_empty());
        assert_eq!(h.late(), 0);
        // A window whose timer has not fired yet still takes records: its result is not
        // out yet. (The host fires due timers first, so this is only a host that lags.)
        let o = h.process(999, &[(&a, Some(&sa))], &[(0, 600, b"")]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(0, 1000), 3), (w(500, 1500), 4), (w(1000, 2000), 1)]);
        assert!(o.records.is_empty());
    }

    #[test]
    fn processing_time_windows_follow_the_batch_clock() {
        let mut h = Harness::in_domain(Windows::tumbling(1000), TimeDomain::Processing, 0, CountFn);
        let a = enc(&"a");
        h.clock.processing_time.set(5_500);
        let reads = h.clock.reads.get();
        // Event timestamps and the watermark play no part.
        let o = h.process(i64::MAX, &[(&a, None)], &[(0, 0, b""), (0, 9_999_999, b""), (0, -3, b"")]);
        assert_eq!(h.clock.reads.get() - reads, 1, "the clock is read once per batch");
        assert_eq!(panes::<u64>(&o.states[0]), [(w(5000, 6000), 3)]);
        assert_eq!(o.timers, [TimerChange { set: true, domain: TimeDomain::Processing, key_index: 0, ts: 5999 }]);
        let sa = state(vec![(w(5000, 6000), 3u64)]);
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 5999)]);
        assert!(o.records.is_empty(), "an event-time timer is not this operator's");
        let out = h.op.on_timer(&timer_input(&[(&a, Some(&sa))], &[(0, 5999, TimeDomain::Processing)]), 0).unwrap();
        let o = parse_keyed_output(&out, 1);
        assert_eq!(o.records, [(5999, a.clone(), enc(&(w(5000, 6000), 3u64)))]);
        assert_eq!(o.states, [Some(None)]);
    }

    #[test]
    fn process_gets_all_values_with_key_and_window() {
        let f =
            |k: &String, win: Window, values: Vec<String>, out: &mut Emitter<String>| out.emit(format!("{k}@{}: {}", win.start, values.join(",")));
        let mut h = Harness::new(Windows::tumbling(1000), 0, ProcessWindowFn::new(f));
        let a = enc(&"a".to_string());
        let o = h.process(i64::MIN, &[(&a, None)], &[(0, 1, &enc(&"x")), (0, 2, &enc(&"y")), (0, 1001, &enc(&"z"))]);
        let sa = o.states[0].clone().unwrap().unwrap();
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 999)]);
        assert_eq!(o.records, [(999, a.clone(), enc(&"a@0: x,y"))]);
        let sa = o.states[0].clone().unwrap().unwrap();
        let o = h.fire(&[(&a, Some(&sa))], &[(0, 1999)]);
        assert_eq!(o.records, [(1999, a.clone(), enc(&"a@1000: z"))]);
        assert_eq!(o.states, [Some(None)]);
    }

    #[test]
    fn the_window_state_codec_writes_the_serde_layout_and_refuses_garbage() {
        fn check<A: Data + PartialEq + core::fmt::Debug>(panes: Vec<(Window, A)>) {
            let mut p = Panes::new();
            for pane in panes {
                p.push(pane);
            }
            let reference = postcard::to_allocvec(&p).unwrap();
            let mut out = Out::with_capacity(0);
            put_panes(&mut out, &p).unwrap();
            let out = out.into_vec();
            assert_eq!(out[..4], (reference.len() as u32).to_le_bytes());
            assert_eq!(&out[4..], &reference[..]);
            assert_eq!(decode_panes::<A>(&reference).unwrap(), p);
            for cut in 0..reference.len() {
                assert!(decode_panes::<A>(&reference[..cut]).is_err(), "cut at {cut}");
            }
            let mut extra = reference.clone();
            extra.push(0);
            assert!(decode_panes::<A>(&extra).is_err());
        }
        let minute = w(1_700_000_040_000, 1_700_000_100_000);
        check::<u64>(vec![]);
        check(vec![(minute, 3u64)]);
        let next = w(1_700_000_100_000, 1_700_000_160_000);
        check(vec![(minute, 3u64), (next, 1)]);
        check(vec![(minute, 1u64 << 60)]);
        check(vec![(w(-5, 5), u64::MAX), (minute, 0), (w(i64::MAX - 1, i64::MAX), 1 << 60)]);
        check(vec![(w(i64::MIN, i64::MAX), 7u32)]);
        check(vec![(minute, (4u64, 9u64)), (w(1_700_000_100_000, 1_700_000_160_000), (1, 1))]);
        check(vec![(minute, "a state".to_string())]);
        assert!(decode_panes::<u64>(&[0xff, 0xff, 0xff, 0x0f]).is_err(), "a count with nothing behind it");
    }

    #[test]
    fn prepared_tumbling_arithmetic_matches_the_checked_one() {
        for (size, offset) in [(1000, 0), (60_000, 7), (3, -2), (1 << 59, 5), (7, -(1 << 59))] {
            let windows = Windows::Tumbling { size, offset };
            let t = Tumbling::new(&windows).unwrap();
            for ts in [0, 1, -1, 2, 999, 1000, -1000, -1001, 1_700_000_000_123, -(1 << 60), (1 << 61) - 1, -(1 << 61)] {
                assert_eq!(t.window(ts), windows.single(ts), "size {size} offset {offset} at {ts}");
            }
            assert_eq!(t.window(1 << 61), None, "outside the prepared range: the checked path");
            assert_eq!(t.window(i64::MIN), None);
        }
        assert!(Tumbling::new(&Windows::Tumbling { size: 1 << 61, offset: 0 }).is_none());
        assert!(Tumbling::new(&Windows::session(5)).is_none());
        // Far outside the range the operator still places records, on the checked path.
        let mut h = Harness::new(Windows::tumbling(1000), 0, CountFn);
        let o = h.process(i64::MIN, &[(b"\x01", None)], &[(0, i64::MAX, b"")]);
        assert_eq!(panes::<u64>(&o.states[0]), [(w(i64::MAX - 807, i64::MAX), 1)]);
    }

    #[test]
    fn bad_timer_input_is_bad_input() {
        let mut h = Harness::new(Windows::tumbling(1000), 0, CountFn);
        let input = timer_input(&[(b"\x01", None)], &[(1, 5, TimeDomain::Event)]);
        assert!(matches!(h.op.on_timer(&input, 0), Err(OpError::BadInput(_))));
        let input = timer_input(&[(b"\x01", Some(&[0x05]))], &[(0, 5, TimeDomain::Event)]);
        assert!(matches!(h.op.on_timer(&input, 0), Err(OpError::BadInput(_))), "a state that is no panes");
        let mut input = timer_input(&[(b"\x01", None)], &[]);
        input.push(0);
        assert!(matches!(h.op.on_timer(&input, 0), Err(OpError::BadInput(_))));
    }

    /// Rough native throughput of a tumbling count: 100k keys, 1 s windows, records in
    /// time order (run with `cargo test --release -- --ignored --nocapture bench`).
    #[test]
    #[ignore]
    fn bench_tumbling_count_native() {
        let mut h = Harness::new(Windows::tumbling(1000), 0, CountFn);
        let (n, batch, keys, per_ms) = (4_000_000u64, 4096u64, 100_000u64, 7_000u64);
        let key_bytes: Vec<Vec<u8>> = (0..keys).map(|k| enc(&k)).collect();
        let mut states: Vec<Option<Vec<u8>>> = vec![None; keys as usize];
        let mut batches = Vec::new();
        for start in (0..n).step_by(batch as usize) {
            let mut index = std::collections::HashMap::new();
            let mut ks = Vec::new();
            let mut rs = Vec::new();
            for i in start..(start + batch).min(n) {
                let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % keys;
                let ki = *index.entry(k).or_insert_with(|| {
                    ks.push(k);
                    ks.len() as u32 - 1
                });
                rs.push((ki, (i / per_ms) as i64));
            }
            batches.push((ks, rs));
        }
        // Play the host once, untimed: current states in, updated states kept. The
        // inputs are kept, so the timed runs below redo exactly the same work.
        let mut inputs = Vec::new();
        for (ks, rs) in &batches {
            let table: Vec<(&[u8], Option<&[u8]>)> = ks.iter().map(|&k| (&key_bytes[k as usize][..], states[k as usize].as_deref())).collect();
            let recs: Vec<(u32, i64, &[u8])> = rs.iter().map(|&(ki, ts)| (ki, ts, &b""[..])).collect();
            let input = keyed(&table, &recs);
            let out = h.op.process(&input, 1 << 16).unwrap();
            let o = weir_batch::parse_output(&out, Some(ks.len())).unwrap();
            for (&k, u) in ks.iter().zip(&o.states) {
                if let weir_batch::StateUpdate::Set(s) = u {
                    states[k as usize] = Some(s.to_vec());
                }
            }
            inputs.push(input);
        }
        for _ in 0..3 {
            let t = std::time::Instant::now();
            for input in &inputs {
                std::hint::black_box(h.op.process(input, 1 << 16).unwrap());
            }
            println!("tumbling count: {:.1} M records/s", n as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
}
