//! Keyed operators: the fold family (`count`, `sum`, `reduce`) and the general `process`
//! with [`KeyedContext`] and [`MapState`].
//!
//! A keyed batch arrives grouped by key with the current value state of each key (see
//! WIT `operator.process`). Each key's state is decoded once per batch, updated in place
//! by every record of that key, and written back once in the state-update tail, so the
//! hot path never calls a host import.

use core::any::{Any, TypeId};
use core::marker::PhantomData;
use std::rc::Rc;

use serde::Serialize;
use weir_batch::{BatchError, FiredTimer, KeyedRecord, Reader, begin_len_prefixed, begin_output, end_len_prefixed, end_records, push_ts};

use crate::Data;
use crate::codec::{self, Out, decode};
use crate::emit::{Emitter, KeyMode};
use crate::error::{OpError, StateError};
use crate::ops::{Operator, accepts_key, install_key};
use crate::side::{self, Ending, OutputTag};
use crate::time::{Clock, host_clock};
use crate::ttl::{StateTtl, TtlNow};
use crate::wit::weir::dataflow::keyed_state as host;

/// One key of the current batch: its bytes (borrowed from the batch), its value state
/// (`None`: no state) and whether this batch wrote the state. One struct per key keeps
/// the per-record lookup to a single bounds check.
pub(crate) struct Slot<'a, S> {
    pub(crate) key: &'a [u8],
    pub(crate) state: Option<S>,
    pub(crate) changed: bool,
}

/// Reuses the slot table for the next batch: the vector is emptied first, and an
/// in-place `collect` keeps its allocation while changing the lifetime of the borrowed
/// key slices, so the table costs no allocation after the first batches.
#[inline]
fn recycle_slots<'b, S>(mut v: Vec<Slot<'_, S>>) -> Vec<Slot<'b, S>> {
    v.clear();
    // `filter_map` (not `filter`) is what changes the element lifetime.
    #[allow(clippy::unnecessary_filter_map)]
    v.into_iter().filter_map(|_| None).collect()
}

/// The per-batch key table shared by keyed operators (and the timer input's, which has
/// the same layout), reused across batches.
pub(crate) struct Keys<S: 'static> {
    slots: Vec<Slot<'static, S>>,
    /// The operator's state TTL, if it has one.
    pub(crate) ttl: Option<StateTtl>,
    /// Where the TTL's processing time comes from (read once per call, only with a TTL).
    pub(crate) clock: Rc<dyn Clock>,
}

impl<S: Data> Keys<S> {
    pub(crate) fn new() -> Self {
        Keys { slots: Vec::new(), ttl: None, clock: host_clock() }
    }

    /// The TTL and the time of this call, if the operator has a TTL.
    #[inline(always)]
    pub(crate) fn ttl_now(&self) -> Option<TtlNow> {
        self.ttl.map(|ttl| TtlNow { ttl, now: self.clock.processing_time() })
    }

    /// Reads the key table, decoding each key's state with `decode_state` (e.g.
    /// [`decode_value_state`]); `on_key` sees each key's bytes (the process operator decodes
    /// the typed key there). With a TTL, an expired state reads as none and is cleared in
    /// the host; with `update_on_read`, every state read is written back (refreshed).
    #[inline(always)]
    pub(crate) fn read<'a>(
        &mut self,
        r: &mut Reader<'a>,
        mut on_key: impl FnMut(&'a [u8]) -> Result<(), OpError>,
        decode_state: impl Fn(&[u8]) -> Result<S, OpError>,
        ttl: Option<TtlNow>,
    ) -> Result<Vec<Slot<'a, S>>, OpError> {
        let mut slots = recycle_slots(core::mem::take(&mut self.slots));
        let count = r.u32("key count")?;
        for _ in 0..count {
            let (key, state) = r.key_entry()?;
            on_key(key)?;
            let slot = match (state, ttl) {
                (None, _) => Slot { key, state: None, changed: false },
                (Some(s), None) => Slot { key, state: Some(decode_state(s)?), changed: false },
                (Some(s), Some(ttl)) => match ttl.unwrap(s) {
                    None => Slot { key, state: None, changed: true },
                    Some(framed) => {
                        let inner = Reader::new(framed).len_prefixed("key state")?;
                        Slot { key, state: Some(decode_state(inner)?), changed: ttl.ttl.update_on_read }
                    }
                },
            };
            slots.push(slot);
        }
        Ok(slots)
    }

    /// Appends one state update per key, a set state with `put_state` (e.g.
    /// `codec::put_encoded`), and keeps the table for the next batch.
    /// With a TTL, a set state is the expiry of a write now, then what `put_state`
    /// writes (length-prefixed, as without a TTL), so any codec works unchanged.
    #[inline(always)]
    pub(crate) fn finish(
        &mut self,
        slots: Vec<Slot<'_, S>>,
        out: &mut Out,
        put_state: impl Fn(&mut Out, &S) -> Result<(), OpError>,
        ttl: Option<TtlNow>,
    ) -> Result<(), OpError> {
        match ttl {
            None => {
                for slot in &slots {
                    codec::put_state_update_with(out, slot.changed, slot.state.as_ref(), &put_state)?;
                }
            }
            Some(ttl) => {
                let expiry = ttl.expiry();
                for slot in &slots {
                    codec::put_state_update_with(out, slot.changed, slot.state.as_ref(), |out, s| {
                        let at = begin_len_prefixed(out);
                        push_ts(out, expiry);
                        put_state(out, s)?;
                        end_len_prefixed(out, at);
                        Ok(())
                    })?;
                }
            }
        }
        self.slots = recycle_slots(slots);
        Ok(())
    }
}

/// A key's value state, postcard-encoded: what keyed operators keep unless they bring
/// a codec of their own.
#[inline(always)]
pub(crate) fn decode_value_state<S: Data>(bytes: &[u8]) -> Result<S, OpError> {
    decode(bytes, "key state")
}

/// How a keyed operator reads and writes a key's value state.
pub(crate) trait StateCodec<S> {
    /// Decodes a key's value state.
    fn decode(bytes: &[u8]) -> Result<S, OpError>;
    /// Appends a key's value state, length-prefixed.
    fn put(out: &mut Out, state: &S) -> Result<(), OpError>;
}

/// Postcard: the state codec of keyed operators without one of their own.
pub(crate) struct Postcard;

impl<S: Data> StateCodec<S> for Postcard {
    #[inline(always)]
    fn decode(bytes: &[u8]) -> Result<S, OpError> {
        decode_value_state(bytes)
    }

    #[inline(always)]
    fn put(out: &mut Out, state: &S) -> Result<(), OpError> {
        codec::put_encoded(out, state)
    }
}

/// What a keyed call holds after its key table: records (`process`) or fired timers
/// (`on-timer`), each naming a key of the table.
pub(crate) trait KeyedItem<'a>: Sized {
    /// The item count, in errors.
    const COUNT: &'static str;
    /// The whole input, in errors.
    const INPUT: &'static str;
    /// Reads item number `index`.
    fn read(r: &mut Reader<'a>, index: usize) -> Result<Self, BatchError>;
    /// The item's key index and timestamp.
    fn key_ts(&self) -> (u32, i64);
}

impl<'a> KeyedItem<'a> for KeyedRecord<'a> {
    const COUNT: &'static str = "record count";
    const INPUT: &'static str = "keyed input";

    #[inline(always)]
    fn read(r: &mut Reader<'a>, _index: usize) -> Result<Self, BatchError> {
        r.keyed_record()
    }

    #[inline(always)]
    fn key_ts(&self) -> (u32, i64) {
        (self.key_index, self.ts)
    }
}

impl<'a> KeyedItem<'a> for FiredTimer {
    const COUNT: &'static str = "timer count";
    const INPUT: &'static str = "timer input";

    #[inline(always)]
    fn read(r: &mut Reader<'a>, index: usize) -> Result<Self, BatchError> {
        r.fired_timer(index)
    }

    #[inline(always)]
    fn key_ts(&self) -> (u32, i64) {
        (self.key_index, self.ts)
    }
}

/// One call of a keyed operator, the frame shared by `process` and `on-timer`: reads
/// the key table (`on_key` sees each key's bytes, `C` decodes its state), then every
/// item `I`, each handed to `item` with its index, its key's slot and the emitter (set
/// to the key and the item's timestamp); writes the records, then one state update per
/// key (encoded by `C`). Returns the output so far, for a trailer to follow. `cx` is
/// what `on_key` and `item` both change.
#[inline(always)]
pub(crate) fn keyed_call<'a, I, C, S, W, X>(
    keys: &mut Keys<S>,
    key_mode: &mut KeyMode<W>,
    input: &'a [u8],
    capacity: usize,
    cx: &mut X,
    mut on_key: impl FnMut(&mut X, &'a [u8]) -> Result<(), OpError>,
    mut item: impl FnMut(&mut X, usize, I, &mut Slot<'a, S>, &mut Emitter<'_, W>, Option<TtlNow>) -> Result<(), OpError>,
) -> Result<Out, OpError>
where
    I: KeyedItem<'a>,
    C: StateCodec<S>,
    S: Data,
    W: Data,
{
    let mut r = Reader::new(input);
    let ttl = keys.ttl_now();
    let mut slots = keys.read(&mut r, |key| on_key(cx, key), C::decode, ttl)?;
    let count = r.u32(I::COUNT)?;
    let mut out = Out::with_capacity(capacity);
    let at = begin_output(&mut out);
    let mut em = Emitter::new(&mut out, key_mode);
    let keys_len = slots.len();
    for index in 0..count as usize {
        let it = I::read(&mut r, index)?;
        let (key_index, ts) = it.key_ts();
        let Some(slot) = slots.get_mut(key_index as usize) else {
            return Err(bad_index(index, key_index, keys_len));
        };
        em.set_input(ts, slot.key);
        item(cx, index, it, slot, &mut em, ttl)?;
        if let Some(e) = em.take_error() {
            return Err(e);
        }
    }
    r.finish(I::INPUT)?;
    drop(em);
    end_records(&mut out, at);
    keys.finish(slots, &mut out, C::put, ttl)?;
    Ok(out)
}

/// Record `record` names a key the batch does not have.
#[cold]
#[inline(never)]
pub(crate) fn bad_index(record: usize, index: u32, keys: usize) -> OpError {
    BatchError::bad_key_index(record, index, keys).into()
}

/// A keyed operator whose state is one accumulator per key and which emits the updated
/// accumulator after every record. `fold` sees the raw value bytes so `count` need not
/// decode them at all.
pub(crate) struct Fold<S: 'static, F> {
    fold: F,
    key_mode: KeyMode<S>,
    keys: Keys<S>,
}

impl<S, F> Fold<S, F>
where
    S: Data,
    F: FnMut(&mut Option<S>, &[u8]) -> Result<(), OpError> + 'static,
{
    pub(crate) fn boxed(fold: F) -> Box<dyn Operator> {
        Box::new(Fold { fold, key_mode: KeyMode::Keep, keys: Keys::new() })
    }
}

impl<S, F> Operator for Fold<S, F>
where
    S: Data,
    F: FnMut(&mut Option<S>, &[u8]) -> Result<(), OpError> + 'static,
{
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let Fold { fold, key_mode, keys } = self;
        let out = keyed_call::<KeyedRecord<'_>, Postcard, _, _, _>(
            keys,
            key_mode,
            input,
            capacity,
            &mut (),
            |_, _| Ok(()),
            |_, _, rec, slot, em, _| {
                fold(&mut slot.state, rec.value)?;
                slot.changed = true;
                if let Some(acc) = &slot.state {
                    em.emit_ref(acc);
                }
                Ok(())
            },
        )?;
        Ok(out.into_vec())
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

/// Fold for `KeyedStream::count`.
pub(crate) fn count() -> Box<dyn Operator> {
    Fold::boxed(|acc: &mut Option<u64>, _value: &[u8]| {
        *acc = Some(acc.map_or(1, |c| c.wrapping_add(1)));
        Ok(())
    })
}

/// Fold for `KeyedStream::reduce` (and `sum`): the first value of a key is its
/// accumulator, later values are combined into it.
pub(crate) fn reduce<V: Data>(mut f: impl FnMut(V, V) -> V + 'static) -> Box<dyn Operator> {
    Fold::boxed(move |acc: &mut Option<V>, value: &[u8]| {
        let value: V = decode(value, "record value")?;
        *acc = Some(match acc.take() {
            Some(prev) => f(prev, value),
            None => value,
        });
        Ok(())
    })
}

/// What a keyed `process` function sees of the current record's key: the key itself,
/// its value state, its map states, and the record's timestamp.
///
/// The value state (`state`/`set_state`/`clear_state`) travels with the batch and costs
/// no host call; map states go through the host on every call.
pub struct KeyedContext<'a, K, S> {
    key: &'a K,
    key_bytes: &'a [u8],
    state: &'a mut Option<S>,
    changed: &'a mut bool,
    ts: i64,
    /// The operator's state TTL and the call's time, if it has one.
    ttl: Option<TtlNow>,
}

impl<'a, K, S> KeyedContext<'a, K, S> {
    pub(crate) fn new(key: &'a K, key_bytes: &'a [u8], state: &'a mut Option<S>, changed: &'a mut bool, ts: i64, ttl: Option<TtlNow>) -> Self {
        KeyedContext { key, key_bytes, state, changed, ts, ttl }
    }

    /// The state format version declared by the code whose state this operator
    /// started from (see [`Stream::state_version`](crate::Stream::state_version)):
    /// `None` when it started without restored state.
    pub fn restored_state_version(&self) -> Option<u32> {
        crate::runtime::restored_state_version()
    }

    /// The key of the current record.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The encoded key bytes, as the host sees them.
    pub fn key_bytes(&self) -> &[u8] {
        self.key_bytes
    }

    /// The timestamp of the current record.
    pub fn timestamp(&self) -> i64 {
        self.ts
    }

    /// Emits `value` to the side output `tag` with the current key and timestamp
    /// (Flink's `Context.output`). Records for a side output the plan never reads are
    /// dropped and counted.
    pub fn output<T: Data>(&self, tag: &OutputTag<T>, value: T) {
        side::emit_value(tag, self.ts, self.key_bytes, &value);
    }

    /// The value state of the current key, if it has one.
    pub fn state(&self) -> Option<&S> {
        self.state.as_ref()
    }

    /// Mutable access to the value state; counts as a write.
    pub fn state_mut(&mut self) -> Option<&mut S> {
        *self.changed = true;
        self.state.as_mut()
    }

    /// Replaces the value state of the current key.
    pub fn set_state(&mut self, state: S) {
        *self.changed = true;
        *self.state = Some(state);
    }

    /// Removes the value state of the current key.
    pub fn clear_state(&mut self) {
        *self.changed = true;
        *self.state = None;
    }

    /// The map state `name` of the current key, with fields `F` and values `T`
    /// (postcard-encoded in the host). Every call on it is a host call.
    pub fn map_state<'s, F: Data, T: Data>(&'s self, name: &'s str) -> MapState<'s, F, T> {
        MapState { name, key: self.key_bytes, ttl: self.ttl, _t: PhantomData }
    }

    /// The list state `name` of the current key, holding `T`s in insertion order.
    /// Every call on it is a host call.
    pub fn list_state<'s, T: Data>(&'s self, name: &'s str) -> ListState<'s, T> {
        ListState { name, key: self.key_bytes, ttl: self.ttl, _t: PhantomData }
    }
}

/// A typed view of one key's list in a named list state, kept by the host.
///
/// It lives in the host's map state under the same name: the element at index `i` has
/// the field `i` as four big-endian bytes, so the host's field order is list order, and
/// the length sits under the empty field, which sorts before every element. With a
/// TTL, each push stamps the element and the length with the same expiry, so the
/// length never expires before an element and an expired length is an empty list.
pub struct ListState<'s, T> {
    name: &'s str,
    key: &'s [u8],
    ttl: Option<TtlNow>,
    _t: PhantomData<fn(T)>,
}

const LIST_LEN_FIELD: &[u8] = &[];

impl<T: Data> ListState<'_, T> {
    /// Number of elements.
    pub fn len(&self) -> Result<u32, StateError> {
        match read_entry(self.name, self.key, LIST_LEN_FIELD, self.ttl, false)? {
            Some(bytes) => decode_state(&bytes),
            None => Ok(0),
        }
    }

    /// True if the list has no elements.
    pub fn is_empty(&self) -> Result<bool, StateError> {
        Ok(self.len()? == 0)
    }

    /// Appends `value`.
    pub fn push(&self, value: &T) -> Result<(), StateError> {
        let len = self.len()?;
        let next = len.checked_add(1).ok_or_else(|| StateError::Codec("list state is full".into()))?;
        write_entry(self.name, self.key, &len.to_be_bytes(), &encode(value)?, self.ttl)?;
        write_entry(self.name, self.key, LIST_LEN_FIELD, &encode(&next)?, self.ttl)
    }

    /// All elements, in insertion order. With a TTL, only live elements below the live
    /// length count (an expired length leaves older elements behind until the host
    /// sweeps them); with `update_on_read`, reading refreshes the whole list.
    pub fn get(&self) -> Result<Vec<T>, StateError> {
        let entries = backend::map_entries(self.name, self.key)?;
        let Some(ttl) = self.ttl else {
            return entries.iter().filter(|(field, _)| field.len() == 4).map(|(_, v)| decode_state(v)).collect();
        };
        let len = match entries.first().filter(|(f, _)| f.is_empty()).and_then(|(_, v)| ttl.unwrap(v)) {
            Some(len) => decode_state::<u32>(len)?,
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::new();
        for (field, v) in &entries {
            let Ok(index) = <[u8; 4]>::try_from(field.as_slice()) else { continue };
            if u32::from_be_bytes(index) >= len {
                continue;
            }
            if let Some(inner) = ttl.unwrap(v) {
                if ttl.ttl.update_on_read {
                    backend::map_put(self.name, self.key, field, &ttl.wrap(inner))?;
                }
                out.push(decode_state(inner)?);
            }
        }
        if ttl.ttl.update_on_read {
            write_entry(self.name, self.key, LIST_LEN_FIELD, &encode(&len)?, self.ttl)?;
        }
        Ok(out)
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<(), StateError> {
        backend::map_clear(self.name, self.key)
    }
}

/// A typed view of one key's entries in a named map state, kept by the host.
pub struct MapState<'s, F, T> {
    name: &'s str,
    key: &'s [u8],
    ttl: Option<TtlNow>,
    _t: PhantomData<fn(F, T)>,
}

impl<F: Data, T: Data> MapState<'_, F, T> {
    /// The value of `field`, if set (and, with a TTL, not expired).
    pub fn get(&self, field: &F) -> Result<Option<T>, StateError> {
        let field = encode(field)?;
        match read_entry(self.name, self.key, &field, self.ttl, true)? {
            Some(bytes) => decode_state(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Sets `field` to `value`.
    pub fn put(&self, field: &F, value: &T) -> Result<(), StateError> {
        write_entry(self.name, self.key, &encode(field)?, &encode(value)?, self.ttl)
    }

    /// Removes `field`.
    pub fn remove(&self, field: &F) -> Result<(), StateError> {
        backend::map_remove(self.name, self.key, &encode(field)?)
    }

    /// All entries, ordered by the encoded field bytes (with a TTL, the live ones).
    pub fn entries(&self) -> Result<Vec<(F, T)>, StateError> {
        let mut out = Vec::new();
        for (f, v) in backend::map_entries(self.name, self.key)? {
            let value = match self.ttl {
                None => v,
                Some(ttl) => match ttl.unwrap(&v) {
                    None => continue,
                    Some(inner) => {
                        if ttl.ttl.update_on_read {
                            backend::map_put(self.name, self.key, &f, &ttl.wrap(inner))?;
                        }
                        inner.to_vec()
                    }
                },
            };
            out.push((decode_state(&f)?, decode_state(&value)?));
        }
        Ok(out)
    }

    /// Removes all entries.
    pub fn clear(&self) -> Result<(), StateError> {
        backend::map_clear(self.name, self.key)
    }
}

/// Reads a map entry's value. With a TTL: `None` once expired (and the entry removed
/// if `remove_expired`), else refreshed if the TTL updates on read.
fn read_entry(name: &str, key: &[u8], field: &[u8], ttl: Option<TtlNow>, remove_expired: bool) -> Result<Option<Vec<u8>>, StateError> {
    let Some(bytes) = backend::map_get(name, key, field)? else { return Ok(None) };
    let Some(ttl) = ttl else { return Ok(Some(bytes)) };
    match ttl.unwrap(&bytes) {
        None => {
            if remove_expired {
                backend::map_remove(name, key, field)?;
            }
            Ok(None)
        }
        Some(inner) => {
            if ttl.ttl.update_on_read {
                backend::map_put(name, key, field, &ttl.wrap(inner))?;
            }
            Ok(Some(inner.to_vec()))
        }
    }
}

/// Writes a map entry's value, stamped with its expiry under a TTL.
fn write_entry(name: &str, key: &[u8], field: &[u8], value: &[u8], ttl: Option<TtlNow>) -> Result<(), StateError> {
    match ttl {
        None => backend::map_put(name, key, field, value),
        Some(ttl) => backend::map_put(name, key, field, &ttl.wrap(value)),
    }
}

/// The host's map state: its `keyed-state` imports in a component, a thread-local map in
/// native tests (the imports exist only inside a component).
mod backend {
    use crate::error::StateError;

    /// A key's (field, value) pairs, ordered by field.
    pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    #[cfg(not(test))]
    pub(super) use imports::*;

    #[cfg(not(test))]
    mod imports {
        use super::{Entries, StateError};
        use crate::wit::weir::dataflow::keyed_state as host;

        pub(crate) fn map_get(name: &str, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(host::map_get(name, key, field)?)
        }
        pub(crate) fn map_put(name: &str, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), StateError> {
            Ok(host::map_put(name, key, field, value)?)
        }
        pub(crate) fn map_remove(name: &str, key: &[u8], field: &[u8]) -> Result<(), StateError> {
            Ok(host::map_remove(name, key, field)?)
        }
        pub(crate) fn map_entries(name: &str, key: &[u8]) -> Result<Entries, StateError> {
            Ok(host::map_entries(name, key)?)
        }
        pub(crate) fn map_clear(name: &str, key: &[u8]) -> Result<(), StateError> {
            Ok(host::map_clear(name, key)?)
        }
    }

    #[cfg(test)]
    pub(crate) use fake::*;

    #[cfg(test)]
    pub(crate) mod fake {
        use super::{Entries, StateError};
        use core::cell::RefCell;
        use std::collections::BTreeMap;

        type Store = BTreeMap<(String, Vec<u8>, Vec<u8>), Vec<u8>>;

        thread_local! {
            /// (state name, key, field) -> value, as the host keeps it.
            pub(crate) static MAP: RefCell<Store> = RefCell::default();
        }

        pub(crate) fn map_get(name: &str, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            Ok(MAP.with_borrow(|m| m.get(&(name.to_string(), key.to_vec(), field.to_vec())).cloned()))
        }
        pub(crate) fn map_put(name: &str, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), StateError> {
            MAP.with_borrow_mut(|m| m.insert((name.to_string(), key.to_vec(), field.to_vec()), value.to_vec()));
            Ok(())
        }
        pub(crate) fn map_remove(name: &str, key: &[u8], field: &[u8]) -> Result<(), StateError> {
            MAP.with_borrow_mut(|m| m.remove(&(name.to_string(), key.to_vec(), field.to_vec())));
            Ok(())
        }
        pub(crate) fn map_entries(name: &str, key: &[u8]) -> Result<Entries, StateError> {
            Ok(MAP.with_borrow(|m| m.iter().filter(|((n, k, _), _)| n == name && k == key).map(|((_, _, f), v)| (f.clone(), v.clone())).collect()))
        }
        pub(crate) fn map_clear(name: &str, key: &[u8]) -> Result<(), StateError> {
            MAP.with_borrow_mut(|m| m.retain(|(n, k, _), _| !(n == name && k == key)));
            Ok(())
        }
    }
}

impl From<host::StateError> for StateError {
    fn from(e: host::StateError) -> Self {
        match e {
            host::StateError::ForeignKey => StateError::ForeignKey,
            host::StateError::NotKeyed => StateError::NotKeyed,
            host::StateError::Backend(m) => StateError::Backend(m),
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_allocvec(v).map_err(|e| StateError::Codec(e.to_string()))
}

fn decode_state<T: Data>(bytes: &[u8]) -> Result<T, StateError> {
    decode(bytes, "map state").map_err(|e| StateError::Codec(e.to_string()))
}

/// The operator behind `KeyedStream::process`.
pub(crate) struct Process<K, S: 'static, V, W, F> {
    f: F,
    key_mode: KeyMode<W>,
    keys: Keys<S>,
    /// Typed keys of the current batch, decoded once per key.
    typed: Vec<K>,
    _v: PhantomData<fn(V)>,
}

impl<K, S, V, W, F> Process<K, S, V, W, F>
where
    K: Data,
    S: Data,
    V: Data,
    W: Data,
    F: FnMut(&mut KeyedContext<'_, K, S>, V, &mut Emitter<'_, W>) + 'static,
{
    pub(crate) fn boxed(f: F) -> Box<dyn Operator> {
        Box::new(Process { f, key_mode: KeyMode::Keep, keys: Keys::new(), typed: Vec::new(), _v: PhantomData })
    }
}

impl<K, S, V, W, F> Operator for Process<K, S, V, W, F>
where
    K: Data,
    S: Data,
    V: Data,
    W: Data,
    F: FnMut(&mut KeyedContext<'_, K, S>, V, &mut Emitter<'_, W>) + 'static,
{
    fn process(&mut self, input: &[u8], capacity: usize) -> Result<Vec<u8>, OpError> {
        let Process { f, key_mode, keys, typed, .. } = self;
        typed.clear();
        let mut out = keyed_call::<KeyedRecord<'_>, Postcard, _, _, _>(
            keys,
            key_mode,
            input,
            capacity,
            typed,
            |typed, key| {
                typed.push(decode::<K>(key, "key")?);
                Ok(())
            },
            |typed, record, rec, slot, em, ttl| {
                // `typed` mirrors the key table, whose index the frame checked.
                let Some(key) = typed.get(rec.key_index as usize) else {
                    return Err(bad_index(record, rec.key_index, typed.len()));
                };
                let value: V = decode(rec.value, "record value")?;
                let mut ctx = KeyedContext { key, key_bytes: slot.key, state: &mut slot.state, changed: &mut slot.changed, ts: rec.ts, ttl };
                f(&mut ctx, value, em);
                Ok(())
            },
        )?;
        side::append(&mut out, Ending::Keyed { timers_written: false })?;
        Ok(out.into_vec())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::build::*;

    fn enc<T: Serialize>(v: &T) -> Vec<u8> {
        postcard::to_allocvec(v).unwrap()
    }

    #[test]
    fn count_counts_from_state() {
        let mut op = count();
        let (a, b) = (enc(&"a"), enc(&"b"));
        let input = keyed(&[(&a, Some(&enc(&5u64))), (&b, None)], &[(0, 1, b""), (1, 2, b""), (0, 3, b"")]);
        let out = op.process(&input, 0).unwrap();
        let parsed = parse_output(&out);
        assert_eq!(parsed.records, vec![(1, a.clone(), enc(&6u64)), (2, b.clone(), enc(&1u64)), (3, a.clone(), enc(&7u64))]);
        assert_eq!(parse_updates(&parsed.tail), vec![Some(Some(enc(&7u64))), Some(Some(enc(&1u64)))]);
    }

    #[test]
    fn untouched_keys_report_unchanged() {
        let mut op = reduce(|a: u64, b: u64| a + b);
        let input = keyed(&[(b"\x01", None), (b"\x02", Some(&enc(&1u64)))], &[(0, 0, &enc(&4u64))]);
        let out = op.process(&input, 0).unwrap();
        let parsed = parse_output(&out);
        assert_eq!(parsed.records, vec![(0, vec![1], enc(&4u64))]);
        assert_eq!(parse_updates(&parsed.tail), vec![Some(Some(enc(&4u64))), None]);
    }

    #[test]
    fn bad_key_index_and_bad_state_are_bad_input() {
        let mut op = count();
        let input = keyed(&[(b"\x01", None)], &[(1, 0, b"")]);
        assert!(matches!(op.process(&input, 0), Err(OpError::BadInput(_))));
        let input = keyed(&[(b"\x01", Some(&[0xff, 0xff]))], &[]);
        assert!(matches!(op.process(&input, 0), Err(OpError::BadInput(_))));
        let mut input = keyed(&[(b"\x01", None)], &[]);
        input.push(0);
        assert!(matches!(op.process(&input, 0), Err(OpError::BadInput(_))));
    }

    #[test]
    fn process_sees_key_and_state() {
        let mut op = Process::boxed(|ctx: &mut KeyedContext<String, Vec<u64>>, v: u64, out: &mut Emitter<String>| {
            let mut seen = ctx.state().cloned().unwrap_or_default();
            seen.push(v);
            if seen.len() == 2 {
                out.emit(format!("{}:{:?}@{}", ctx.key(), seen, ctx.timestamp()));
                ctx.clear_state();
            } else {
                ctx.set_state(seen);
            }
        });
        let k = enc(&"k");
        let input = keyed(&[(&k, Some(&enc(&vec![1u64])))], &[(0, 9, &enc(&2u64))]);
        let out = op.process(&input, 0).unwrap();
        let parsed = parse_output(&out);
        assert_eq!(parsed.records, vec![(9, k, enc(&"k:[1, 2]@9"))]);
        assert_eq!(parse_updates(&parsed.tail), vec![Some(None)]);
    }

    #[test]
    fn batches_reuse_tables() {
        let mut op = count();
        for round in 0..3u64 {
            let input = keyed(&[(b"\x07", Some(&enc(&round)))], &[(0, 0, b"")]);
            let out = op.process(&input, 0).unwrap();
            assert_eq!(parse_output(&out).records, vec![(0, vec![7], enc(&(round + 1)))]);
        }
    }

    mod ttl {
        #![allow(clippy::unwrap_used)]
        use super::*;
        use crate::time::TestClock;

        type Ctx<'a> = KeyedContext<'a, String, u64>;

        /// A process operator with state TTL `ttl` on `clock`.
        fn op<F>(ttl: StateTtl, clock: &Rc<TestClock>, f: F) -> Process<String, u64, String, Option<u64>, F>
        where
            F: FnMut(&mut Ctx<'_>, String, &mut Emitter<Option<u64>>) + 'static,
        {
            let mut keys = Keys::new();
            keys.ttl = Some(ttl);
            keys.clock = clock.clone();
            Process { f, key_mode: KeyMode::Keep, keys, typed: Vec::new(), _v: PhantomData }
        }

        /// One batch of `command`s for key "k" whose value state is `state`: what it
        /// emitted and the key's state update.
        fn call(op: &mut dyn Operator, state: Option<&[u8]>, commands: &[&str]) -> (Vec<Option<u64>>, Option<Option<Vec<u8>>>) {
            let k = enc(&"k");
            let values: Vec<Vec<u8>> = commands.iter().map(enc).collect();
            let records: Vec<(u32, i64, &[u8])> = values.iter().map(|v| (0, 0, v.as_slice())).collect();
            let out = op.process(&keyed(&[(&k, state)], &records), 0).unwrap();
            let parsed = parse_output(&out);
            let emitted = parsed.records.iter().map(|(_, _, v)| postcard::from_bytes(v).unwrap()).collect();
            (emitted, parse_updates(&parsed.tail).remove(0))
        }

        fn value_state(ctx: &mut Ctx<'_>, command: String, out: &mut Emitter<Option<u64>>) {
            match command.as_str() {
                "set" => ctx.set_state(7),
                _ => out.emit(ctx.state().copied()),
            }
        }

        #[test]
        fn value_state_expires_after_the_last_write() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100), &clock, value_state);
            let (_, update) = call(&mut op, None, &["set"]);
            let stored = update.flatten().unwrap();
            assert_eq!(stored[..8], 1_100i64.to_le_bytes(), "the expiry leads the stored bytes");
            clock.processing_time.set(1_099);
            assert_eq!(call(&mut op, Some(&stored), &["get"]), (vec![Some(7)], None), "a read does not refresh it");
            clock.processing_time.set(1_100);
            assert_eq!(call(&mut op, Some(&stored), &["get"]), (vec![None], Some(None)), "expired: absent, and cleared in the host");
            let (emitted, update) = call(&mut op, Some(&stored), &["get", "set", "get"]);
            assert_eq!(emitted, [None, Some(7)]);
            assert_eq!(update.flatten().unwrap()[..8], 1_200i64.to_le_bytes(), "a write after expiry starts anew");
        }

        #[test]
        fn update_on_read_refreshes_value_state_read_in_a_batch() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100).update_on_read(), &clock, value_state);
            let stored = call(&mut op, None, &["set"]).1.flatten().unwrap();
            clock.processing_time.set(1_090);
            let (emitted, update) = call(&mut op, Some(&stored), &["get"]);
            assert_eq!(emitted, [Some(7)]);
            let refreshed = update.flatten().unwrap();
            assert_eq!(refreshed[..8], 1_190i64.to_le_bytes());
            clock.processing_time.set(1_150);
            assert_eq!(call(&mut op, Some(&refreshed), &["get"]).0, [Some(7)], "alive past the first expiry");
            assert_eq!(call(&mut op, Some(&stored), &["get"]), (vec![None], Some(None)), "the old bytes are expired");
        }

        fn map_state(ctx: &mut Ctx<'_>, command: String, out: &mut Emitter<Option<u64>>) {
            let map = ctx.map_state::<String, u64>("m");
            match command.as_str() {
                "put" => map.put(&"f".to_string(), &1).unwrap(),
                "entries" => out.emit(Some(map.entries().unwrap().len() as u64)),
                _ => out.emit(map.get(&"f".to_string()).unwrap()),
            }
        }

        fn stored_fields() -> usize {
            backend::fake::MAP.with_borrow(|m| m.len())
        }

        #[test]
        fn map_entries_expire_and_are_removed_when_read() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100), &clock, map_state);
            call(&mut op, None, &["put"]);
            clock.processing_time.set(1_099);
            assert_eq!(call(&mut op, None, &["get", "entries"]).0, [Some(1), Some(1)]);
            clock.processing_time.set(1_100);
            assert_eq!(call(&mut op, None, &["entries", "get"]).0, [Some(0), None]);
            assert_eq!(stored_fields(), 0, "the expired entry was removed");
        }

        #[test]
        fn update_on_read_refreshes_map_entries() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100).update_on_read(), &clock, map_state);
            call(&mut op, None, &["put"]);
            clock.processing_time.set(1_090);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(1)]);
            clock.processing_time.set(1_150);
            assert_eq!(call(&mut op, None, &["entries"]).0, [Some(1)], "refreshed to 1 190 by the read at 1 090");
            clock.processing_time.set(1_249);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(1)], "refreshed to 1 250 by entries at 1 150");
            clock.processing_time.set(1_349);
            assert_eq!(call(&mut op, None, &["get"]).0, [None]);
        }

        fn list_state(ctx: &mut Ctx<'_>, command: String, out: &mut Emitter<Option<u64>>) {
            let list = ctx.list_state::<u64>("l");
            match command.strip_prefix("push ") {
                Some(n) => list.push(&n.parse().unwrap()).unwrap(),
                None => {
                    out.emit(Some(u64::from(list.len().unwrap())));
                    for v in list.get().unwrap() {
                        out.emit(Some(v));
                    }
                }
            }
        }

        #[test]
        fn list_elements_expire_one_by_one_and_the_list_with_its_last() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100), &clock, list_state);
            call(&mut op, None, &["push 1"]);
            clock.processing_time.set(1_050);
            call(&mut op, None, &["push 2"]);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(2), Some(1), Some(2)]);
            clock.processing_time.set(1_120);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(2), Some(2)], "the first element expired, the length lives on");
            clock.processing_time.set(1_150);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(0)], "never returned once expired");
            call(&mut op, None, &["push 3"]);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(1), Some(3)], "a push after expiry starts a new list");
        }

        #[test]
        fn update_on_read_refreshes_the_whole_list() {
            let clock = TestClock::at(0);
            clock.processing_time.set(1_000);
            let mut op = op(StateTtl::new(100).update_on_read(), &clock, list_state);
            call(&mut op, None, &["push 1", "push 2"]);
            clock.processing_time.set(1_090);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(2), Some(1), Some(2)]);
            clock.processing_time.set(1_180);
            assert_eq!(call(&mut op, None, &["get"]).0, [Some(2), Some(1), Some(2)]);
        }

        #[test]
        fn count_restarts_after_its_state_expired() {
            let clock = TestClock::at(0);
            clock.processing_time.set(10);
            let mut op = count();
            assert!(op.set_state_ttl(StateTtl::new(5)));
            let k = enc(&"k");
            // The fold reads the host clock; the native stand-in of the host's clock import.
            crate::time::test_host::PROCESSING_TIME.with(|t| t.set(10));
            let out = op.process(&keyed(&[(&k, None)], &[(0, 0, b""), (0, 0, b"")]), 0).unwrap();
            let stored = parse_updates(&parse_output(&out).tail).remove(0).flatten().unwrap();
            crate::time::test_host::PROCESSING_TIME.with(|t| t.set(14));
            let out = op.process(&keyed(&[(&k, Some(&stored))], &[(0, 0, b"")]), 0).unwrap();
            assert_eq!(parse_output(&out).records[0].2, enc(&3u64));
            crate::time::test_host::PROCESSING_TIME.with(|t| t.set(15));
            let out = op.process(&keyed(&[(&k, Some(&stored))], &[(0, 0, b"")]), 0).unwrap();
            assert_eq!(parse_output(&out).records[0].2, enc(&1u64), "expired: the count starts over");
        }
    }
}
