//! Errors crossing the sandbox boundary, and the errors of the typed state API.

use core::fmt;

/// Why an operator call failed; mirrors WIT `operator-error` without depending on the
/// bindings, so the codec and operators stay testable natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpError {
    /// The component has no operator with this id (sources, sinks and unknown ids).
    UnknownOperator(u32),
    /// The host sent a batch or state we cannot decode; names what was wrong.
    BadInput(String),
    /// The user's code or the SDK reported a failure.
    Failed(String),
}

impl From<weir_batch::BatchError> for OpError {
    /// A batch that does not follow the layout is bad input. Out of line: the readers
    /// on the hot path only branch to it.
    #[cold]
    #[inline(never)]
    fn from(e: weir_batch::BatchError) -> Self {
        OpError::BadInput(e.to_string())
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::UnknownOperator(op) => write!(f, "unknown operator {op}"),
            OpError::BadInput(m) => write!(f, "bad input: {m}"),
            OpError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

/// Why a map-state call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key's key group is not owned by this subtask (the host refused the key).
    ForeignKey,
    /// The operator is not keyed, or no batch is being processed.
    NotKeyed,
    /// The host's state backend failed; the operator should fail and will be restarted.
    Backend(String),
    /// A field or value could not be encoded or decoded with the requested types.
    Codec(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::ForeignKey => f.write_str("key not owned by this subtask"),
            StateError::NotKeyed => f.write_str("map state used outside a keyed batch"),
            StateError::Backend(m) => write!(f, "state backend failed: {m}"),
            StateError::Codec(m) => write!(f, "state codec: {m}"),
        }
    }
}

impl std::error::Error for StateError {}
