//! # weir-sdk-operator: one Weir operator as a component
//!
//! A polyglot job names one component per operator in its manifest. Each such component
//! has world `operator-component` of `wit/dataflow.wit`: it exports `operator` (operator
//! id 0) and sees records as raw bytes, exactly as they cross the boundary. This crate is
//! the Rust side of that contract; `weir-sdk` (`export_job!`) stays the way to write a
//! whole job in Rust.
//!
//! ```ignore
//! use weir_sdk_operator::{Emitter, Error, OpenContext, Operator, RawRecord};
//!
//! struct Tag;
//!
//! impl Operator for Tag {
//!     fn open(_ctx: &OpenContext) -> Result<Self, Error> {
//!         Ok(Tag)
//!     }
//!     fn process(&mut self, r: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error> {
//!         out.emit_parts(r.ts, r.key, &[b"v:", r.value]);
//!         Ok(())
//!     }
//! }
//! weir_sdk_operator::export_operator!(Tag);
//! ```
//!
//! A keyed operator implements [`KeyedOperator`] and is exported with
//! [`export_keyed_operator!`]; it sees each record with the value state of its key.
//! Build with `cargo build --release --target wasm32-wasip2` (crate type `cdylib`).

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

extern crate self as weir_sdk_operator;

mod codec;
mod runtime;

pub use codec::{Emitter, KeyState, postcard_str, postcard_varint};
pub use runtime::{Export, keyed_close, keyed_open, keyed_process, plain_close, plain_open, plain_process};
/// One record as it crosses the boundary: opaque key and value bytes and a timestamp
/// (the key is empty before any key-by).
pub use weir_batch::Record as RawRecord;

/// Generated WIT bindings (world `operator-component`). Not part of the API.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod wit {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "operator-component",
        pub_export_macro: true,
        default_bindings_module: "weir_sdk_operator::wit",
        runtime_path: "weir_sdk_operator::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub use wit_bindgen;

/// Why an operator call failed; becomes the WIT `operator-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A record or batch could not be decoded.
    BadInput(String),
    /// The operator's own code failed.
    Failed(String),
}

impl Error {
    /// A decoding failure.
    pub fn bad_input(msg: impl Into<String>) -> Self {
        Error::BadInput(msg.into())
    }

    /// Any other failure.
    pub fn failed(msg: impl Into<String>) -> Self {
        Error::Failed(msg.into())
    }
}

impl From<weir_batch::BatchError> for Error {
    /// A batch that does not follow the layout is bad input.
    #[cold]
    #[inline(never)]
    fn from(e: weir_batch::BatchError) -> Self {
        Error::BadInput(e.to_string())
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::BadInput(m) => write!(f, "bad input: {m}"),
            Error::Failed(m) => write!(f, "{m}"),
        }
    }
}

/// What `open` is told: where the subtask runs and the operator's arguments.
#[derive(Debug, Clone)]
pub struct OpenContext {
    /// Index of this subtask among the operator's subtasks.
    pub subtask: u32,
    /// Number of subtasks of the operator.
    pub parallelism: u32,
    /// Number of key groups of the job.
    pub max_parallelism: u32,
    /// The operator's arguments, in the manifest's order.
    pub args: Vec<(String, String)>,
}

impl OpenContext {
    /// The value of argument `name`, if given.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Argument `name` parsed as `T`, or `default` when absent.
    pub fn arg_or<T: core::str::FromStr>(&self, name: &str, default: T) -> Result<T, Error> {
        match self.arg(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Error::failed(format!("argument {name}={v:?} is not valid"))),
        }
    }
}

/// An operator over records that are not keyed: called once per input record.
pub trait Operator: Sized + 'static {
    /// Creates the operator for one subtask.
    fn open(ctx: &OpenContext) -> Result<Self, Error>;
    /// Handles one record; emits any number of output records.
    fn process(&mut self, record: RawRecord<'_>, out: &mut Emitter) -> Result<(), Error>;
    /// Called when the subtask finishes.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A keyed operator: its input edge is `key-by`, and each record comes with the value
/// state of its key (bytes, carried with the batch by the host).
pub trait KeyedOperator: Sized + 'static {
    /// Creates the operator for one subtask.
    fn open(ctx: &OpenContext) -> Result<Self, Error>;
    /// Handles one record of key `record.key` whose value state is `state`.
    fn process(&mut self, record: RawRecord<'_>, state: &mut KeyState<'_>, out: &mut Emitter) -> Result<(), Error>;
    /// Called when the subtask finishes.
    fn close(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// Messages to the host's log, tagged by the host with the operator's identity.
pub mod log {
    use crate::wit::weir::dataflow::log::{Level, log};

    weir_batch::log_functions!(log, Level);
}

/// The format version of the operator's state (`state-version`): `declare` the version
/// the operator writes in `open` (recorded with every snapshot of its state; 0 if never
/// declared); `restored` is the version declared by the code whose state it starts
/// from (a restore from a checkpoint or savepoint, or the code a live swap replaced),
/// `None` without restored state. Both only during a call of the operator.
pub mod state_version {
    /// Declares the format version of the state the operator writes.
    pub fn declare(version: u32) {
        crate::wit::weir::dataflow::state_version::declare(version);
    }

    /// The version the state the operator starts from was written with.
    pub fn restored() -> Option<u32> {
        crate::wit::weir::dataflow::state_version::restored()
    }
}

/// Map state through host calls (`keyed-state`), for keyed operators, during `process`.
pub mod map_state {
    pub use crate::wit::weir::dataflow::keyed_state::{StateError, map_clear, map_entries, map_get, map_put, map_remove};
}

/// Exports `$ty` (an [`Operator`]) as operator 0 of this component. Call it once, at the
/// crate root of a `cdylib` built for `wasm32-wasip2`.
#[macro_export]
macro_rules! export_operator {
    ($ty:ty) => {
        const _: () = {
            struct __WeirOperator;
            impl $crate::Export for __WeirOperator {
                fn open(info: $crate::OpenContext) -> Result<(), $crate::Error> {
                    $crate::plain_open::<$ty>(info)
                }
                fn process(batch: &[u8]) -> Result<Vec<u8>, $crate::Error> {
                    $crate::plain_process::<$ty>(batch)
                }
                fn close() -> Result<(), $crate::Error> {
                    $crate::plain_close::<$ty>()
                }
            }
    $crate::wit::export!(__WeirOperator with_types_in $crate::wit);
        };
    };
}

/// Exports `$ty` (a [`KeyedOperator`]) as operator 0 of this component.
#[macro_export]
macro_rules! export_keyed_operator {
    ($ty:ty) => {
        const _: () = {
            struct __WeirOperator;
            impl $crate::Export for __WeirOperator {
                fn open(info: $crate::OpenContext) -> Result<(), $crate::Error> {
                    $crate::keyed_open::<$ty>(info)
                }
                fn process(batch: &[u8]) -> Result<Vec<u8>, $crate::Error> {
                    $crate::keyed_process::<$ty>(batch)
                }
                fn close() -> Result<(), $crate::Error> {
                    $crate::keyed_close::<$ty>()
                }
            }
    $crate::wit::export!(__WeirOperator with_types_in $crate::wit);
        };
    };
}

#[cfg(test)]
mod tests;
