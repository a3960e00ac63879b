//! What is wrong with a batch that does not follow the layout.

use core::fmt;

/// A batch that does not follow the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// A length or count points past the end of the buffer.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where in the buffer.
        offset: usize,
        /// Bytes the field claims.
        need: u64,
        /// Bytes left in the buffer.
        have: usize,
    },
    /// A key index refers to no key of the batch.
    BadKeyIndex {
        /// Record number in the batch.
        record: usize,
        /// The index it carries.
        index: u32,
        /// Keys in the batch.
        keys: usize,
    },
    /// A state update has an unknown tag.
    BadStateTag {
        /// Which update.
        index: usize,
        /// The tag found.
        tag: u8,
    },
    /// A timer change or fired timer has an unknown kind or domain.
    BadTimer {
        /// Which change or timer.
        index: usize,
        /// The byte found.
        kind: u8,
    },
    /// A two-input operator's batch names an input it does not have.
    BadInput {
        /// The input found.
        input: u32,
    },
    /// Bytes are left over after the last field.
    Trailing {
        /// What was complete.
        what: &'static str,
        /// How many bytes remain.
        extra: usize,
    },
}

impl BatchError {
    /// Record `record` names key `index` of a batch with `keys` keys. Out of line: the
    /// readers' loops only branch to it.
    #[cold]
    #[inline(never)]
    pub fn bad_key_index(record: usize, index: u32, keys: usize) -> Self {
        BatchError::BadKeyIndex { record, index, keys }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { what, offset, need, have } => write!(f, "{what} at byte {offset} needs {need} bytes but only {have} remain"),
            BatchError::BadKeyIndex { record, index, keys } => write!(f, "record {record} refers to key {index} but the batch has {keys} keys"),
            BatchError::BadStateTag { index, tag } => write!(f, "state update {index} has unknown tag {tag}"),
            BatchError::BadTimer { index, kind } => write!(f, "timer {index} has unknown kind {kind}"),
            BatchError::BadInput { input } => write!(f, "the batch came through input {input}, but a connect has inputs 0 and 1"),
            BatchError::Trailing { what, extra } => write!(f, "{extra} unexpected trailing bytes after {what}"),
        }
    }
}

impl core::error::Error for BatchError {}
