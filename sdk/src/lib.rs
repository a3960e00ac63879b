//! # weir-sdk: write a Weir job in Rust
//!
//! A Weir job is one WebAssembly component (world `job-component` of
//! `wit/dataflow.wit`): it declares its dataflow graph in `plan` and implements all of its
//! operators behind `open`/`process`/`close`. This crate makes that feel like Flink's
//! DataStream API:
//!
//! ```ignore
//! use weir_sdk::prelude::*;
//!
//! fn build(job: &mut Job) {
//!     job.file_lines("lines")
//!         .flat_map("split", |line: String, out: &mut Emitter<String>| {
//!             for w in line.split_whitespace() { out.emit(w.to_string()) }
//!         })
//!         .key_by("by-word", |w: &String| w.clone())
//!         .count("count")
//!         .sink("out", Sink::default());
//! }
//! weir_sdk::export_job!(build);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `cdylib` is the component.
//!
//! ## How it works
//! `build` runs in `plan`: every operator call records a node, an edge and the closure.
//! The host calls `plan` again inside every instance that runs operators, which rebuilds
//! the same closures in the same order; node indices are operator ids, and `process`
//! dispatches to the closure registered under the id. Nothing but the graph is
//! serialized, so `build` must be deterministic in its arguments.
//!
//! Records are `(key, value, timestamp)`; keys and values are postcard-encoded `K` and
//! `V` of a [`Stream<K, V>`] (`K = ()` before any `key_by`, encoded as zero bytes). A batch
//! crosses the boundary as one flat buffer that is decoded in place and answered with one
//! buffer written directly (see `wit/dataflow.wit`, `operator.process`).
//!
//! ## Map
//! - [`Job`] (module `job`): arguments, name, sources; [`Stream`], [`KeyedStream`],
//!   [`WindowedStream`], [`Sink`]: the builder API.
//! - [`Emitter`] (`emit`): how `flat_map` and `process` emit; it can also run a fused key
//!   selector.
//! - [`KeyedContext`], [`MapState`], [`ListState`] (`keyed`): keyed operators, value state that travels
//!   with the batch, map state through host calls.
//! - [`WatermarkStrategy`], [`Timer`], [`TimeDomain`] (`time`): event time in the plan
//!   (`Stream::assign_timestamps`, `Stream::with_watermarks`,
//!   `Job::generator_with_time`), and the clock seam: operators read the watermark and
//!   processing time through it, once per batch; it is the host's `clock` import in a
//!   component and a hand-set clock in native tests.
//! - [`KeyedProcessFunction`], [`TimerContext`] (`timers`): keyed operators with timers
//!   (`KeyedStream::process_with_timers`, `process_function`); the driver that runs
//!   `process` and `on-timer` for them and writes timer changes after the state updates
//!   (only if there are any); the `timers.on-timer` export.
//! - [`Window`], [`Windows`] (`window`): window assignment, session merging and
//!   lateness as pure logic, and the per-key window state (open windows with their
//!   accumulators, one inline; keyed operators may bring their own state codec, and
//!   windows do). [`AggregateFunction`] and the window operators
//!   (`windowed`): `KeyedStream::window(...)` `.count/.sum/.reduce/.aggregate/.process`,
//!   built on timers: a timer per window (set when it opens, not per record), allowed
//!   lateness, late records dropped and counted, or sent to a side output.
//! - [`OutputTag`] (`side`): side outputs. Operators emit to them
//!   ([`Emitter::output`], [`KeyedContext::output`], windows' late records with
//!   `WindowedStream::side_output_late_data`); `Stream::side_output` reads one as a
//!   stream of its own. They are collected apart from the main output and written as
//!   the batch's optional side section, only when there are any.
//! - Streams that meet: `Stream::union` (no node: the next operator reads every
//!   stream of the union);
//!   [`KeyedCoProcessFunction`], [`ConnectedStreams`] (`connect`):
//!   `a.key_by(..).connect(b.key_by(..)).process(..)`, one keyed operator with two
//!   inputs, whose batches the host tags with the input they came through.
//! - Joins on connect (`join`): `a.key_by(..).join(b.key_by(..))` `.inner/.left_outer/
//!   .full_outer` (regular equi-joins, [`JoinedStreams`]) or `.window(..).apply(..)`
//!   ([`WindowJoin`]); `a.key_by(..).interval_join(b.key_by(..)).between(lo, hi)
//!   .process(..)` ([`IntervalJoin`]). Rows are the key's value state; timers end them.
//! - [`TextField`] (`text`): how text sinks print keys and values.
//! - `graph`: the recorded graph, key-selector placement, lowering to the WIT plan.
//! - `codec`: this SDK's side of the batch layouts (the layout itself, and the panic hook
//!   and log functions, are `weir-batch`, shared with the host and `weir-sdk-operator`);
//!   `runtime`: the exported entry points.
//! - [`log`]: messages to the host's log.
//!
//! ## Graph shape
//! - `key_by` is fused into the upstream operator when that operator feeds only the key
//!   selector: the operator's emit computes and writes the key, so re-keying costs no
//!   extra node. After a host source it becomes a small operator node of its own.
//! - Text sinks get an operator `"<sink uid>.format"` in front of them (forward edge)
//!   that turns postcard `(K, V)` into UTF-8 text; discard sinks get none.
//!
//! ## Performance
//! Batches are decoded in place: records are slices of the input buffer, and only the
//! user's own types allocate. Output is written straight into one buffer sized from the
//! previous batch, with length prefixes patched afterwards. Keyed operators decode each
//! key's value state once per batch and write it back once, with no host call on the
//! hot path. Integer keys, values and states (`u32`, `u64`, `usize`, `i32`, `i64`) skip
//! serde and are read and written as postcard varints directly.
//!
//! Windows keep each key's open windows in its value state, so their per-record work is
//! the window's start, a comparison with the watermark (read once per batch) and an
//! accumulator update; timers cost output bytes only when a window opens or fires.
//!
//! It is not: a runtime (the host runs sources, sinks, routing, watermarks, state and
//! timers), or a binding users touch (`wit` is generated and hidden).

#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

extern crate self as weir_sdk;

mod broadcast;
mod codec;
mod connect;
mod emit;
mod error;
mod graph;
mod job;
mod join;
mod keyed;
mod ops;
mod runtime;
mod side;
mod text;
mod time;
mod timers;
mod ttl;
mod window;
mod windowed;

/// Generated WIT bindings. Not part of the API; `export_job!` refers to it.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit",
        world: "job-component",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk::wit",
        runtime_path: "weir_sdk::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen;

/// Re-exported so jobs can derive `Serialize`/`Deserialize` for their types with
/// `#[serde(crate = "weir_sdk::serde")]` without a serde dependency of their own.
pub use serde;

pub use broadcast::{BroadcastConnectedStream, BroadcastEmitter, BroadcastState, KeyedBroadcastProcessFunction, ReadOnlyBroadcastState};
pub use connect::{ConnectedStreams, KeyedCoProcessFunction};
pub use emit::Emitter;
pub use error::StateError;
pub use job::{Connector, Job, KeyedStream, Sink, SinkHandle, Stream, WindowedStream};
pub use join::{IntervalBounds, IntervalContext, IntervalJoin, JoinedStreams, WindowJoin};
pub use keyed::{KeyedContext, ListState, MapState};
pub use runtime::BuildFn;

/// The state format version declared by the code whose state the running operator
/// started from: the code that took the snapshot it was restored from (after a
/// failure, from a savepoint, at a new parallelism), or the code a live swap replaced.
/// `None` when it started without restored state, or from a snapshot taken before
/// Weir recorded state versions. An operator declares its own with
/// [`Stream::state_version`]. Call it while the operator runs (in its closures).
pub fn restored_state_version() -> Option<u32> {
    runtime::restored_state_version()
}
pub use side::OutputTag;
pub use text::TextField;
pub use time::{TimeDomain, Timer, WatermarkStrategy};
pub use timers::{KeyedProcessFunction, TimerContext};
pub use ttl::StateTtl;
pub use window::{Window, Windows};
pub use windowed::AggregateFunction;

/// What keys, values and states must be: postcard-serializable, owned types.
pub trait Data: serde::Serialize + serde::de::DeserializeOwned + 'static {}

impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> Data for T {}

/// Everything a job's `build` function needs.
pub mod prelude {
    pub use crate::{
        AggregateFunction, BroadcastConnectedStream, BroadcastEmitter, BroadcastState, ConnectedStreams, Connector, Data, Emitter, IntervalBounds,
        IntervalContext, IntervalJoin, Job, JoinedStreams, KeyedBroadcastProcessFunction, KeyedCoProcessFunction, KeyedContext, KeyedProcessFunction,
        KeyedStream, ListState, MapState, OutputTag, ReadOnlyBroadcastState, Sink, StateError, StateTtl, Stream, TextField, TimeDomain, Timer,
        TimerContext, WatermarkStrategy, Window, WindowJoin, WindowedStream, Windows,
    };
}

/// Messages to the host's log, tagged by the host with the operator's identity.
pub mod log {
    use crate::wit::weir::dataflow::log::{Level, log};

    weir_batch::log_functions!(log, Level);
}

/// Internals `export_job!` expands to.
#[doc(hidden)]
pub mod __private {
    pub use crate::runtime::JobMain;
}

/// Exports the job whose graph `build` (a `fn(&mut Job)`) declares. Call it once, at
/// the crate root of a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! export_job {
    ($build:path) => {
        const _: () = {
            struct __WeirJob;

            impl $crate::__private::JobMain for __WeirJob {
                fn build(job: &mut $crate::Job) {
                    let build: $crate::BuildFn = $build;
                    build(job)
                }
            }

    $crate::wit::export!(__WeirJob with_types_in $crate::wit);
        };
    };
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vector_tests;
