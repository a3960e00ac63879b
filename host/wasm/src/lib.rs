//! The Wasm sandbox: loads job components and runs their operators under limits.
//!
//! - [`Runtime`]: one wasmtime engine per process (fuel metering on, pooling allocator),
//!   a linker with Weir's host interfaces and a WASI that grants no files, sockets or
//!   environment, and clocks and randomness only as a [`Sandbox`] says, and the
//!   compiled-component cache keyed by content hash, in memory and on disk, so a job is
//!   compiled once, also across process restarts.
//! - [`JobComponent`]: a checked, compiled component: at least the `operator-component`
//!   world (operators only, named by a job manifest), or `job-component` (with a plan).
//!   Loading refuses, before compiling anything, files over the size limit, files that
//!   are not Wasm, and core modules; after compiling, components of another world or
//!   WIT version.
//! - [`Instance`]: one sandboxed instance, as used by one subtask. Each call gets a fuel
//!   budget; memory growth past the limit traps; a guest panic's message is kept to
//!   explain the trap. A trapped instance is poisoned and must be replaced.
//!
//! It is not: the task executor (that is `weir-taskmanager`), and it never interprets
//! records beyond checking the shape of what a guest returns.

mod bindings;
mod error;
mod grants;
mod instance;
mod runtime;

pub use error::{LoadError, OperatorFailure, TrapKind};
pub use grants::Sandbox;
pub use instance::{Instance, KeyedStateAccess, MapEntries, OpRef, StateAccessError, TaskInfo, Time};
pub use runtime::{EPOCH_TICK, JobComponent, Limits, Runtime, WIT_VERSION, World, read_component};
