//! Host-managed keyed state: fjall on disk behind a per-operator in-memory cache.
//!
//! A TaskManager opens one [`StateStore`] (its state directory); each job gets a fjall
//! database in it, deleted with the job, and each subtask a [`TaskState`] that owns a range of
//! key groups. Every stored key starts with its key group (big-endian u16), so the
//! state of a key group is one contiguous range: that is what checkpoints, restores and
//! rescaling will copy.
//!
//! - [`ValueCache`]: the value state of one keyed operator, the hot path. Keyed batches
//!   carry each key's value to the guest and take the new one back; the cache keeps
//!   them in memory, loads misses from fjall, and writes dirty entries back in batches
//!   when it outgrows its budget or is flushed.
//! - Map state ([`TaskState::map_get`] and friends) goes straight to fjall: it is the
//!   flexible path behind the guest's `keyed-state` imports, not the hot one.
//!
//! - [`Timers`]: one keyed operator's event-time and processing-time timers, in memory
//!   by instant; captures copy them as entries under their keys' key groups, so
//!   checkpoints, restores and rescales carry them like any state.
//!
//! - State TTL ([`expired`], [`ValueCache::sweep_expired`], [`TaskState::sweep_expired`]):
//!   expired state of operators with a TTL is dropped in the background.
//!
//! - [`Capture`]: a subtask's state at a checkpoint barrier: a fjall snapshot (cheap,
//!   read later off the hot path), the caches' dirty entries and the pending timers,
//!   plus the keys written since the previous capture,
//!   so a checkpoint can hold everything ([`Capture::full`]) or only what changed
//!   ([`Capture::delta`]).
//!
//! It is not: a checkpoint format or a distributed store (`weir-checkpoint` writes the
//! files). Durability of a running job
//! comes from checkpoints, so the journal is not synced on every write.

mod cache;
mod store;
mod timers;
mod ttl;

pub use cache::ValueCache;
pub use store::{Capture, MapEntries, StateError, StateStore, TaskState};
pub use timers::{Due, TimeDomain, Timers};
pub use ttl::{SweepCursor, expired};
