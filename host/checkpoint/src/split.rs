//! A source's position as checkpoints store it: the unread rest of its input, as
//! replayable splits. Here, not with the sources, because the JobManager writes
//! positions too (a finished source's exhausted one) without knowing any executor.

use serde::{Deserialize, Serialize};

/// A replayable piece of a source's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    /// Numbers `next, next+step, ...` below `end`.
    Numbers {
        /// Next number to emit.
        next: u64,
        /// First number not to emit.
        end: u64,
        /// Distance between numbers.
        step: u64,
    },
    /// The lines of a file starting in `pos..end` (`pos` is at the start of a line).
    Lines {
        /// Byte offset of the next line.
        pos: u64,
        /// End of the byte range.
        end: u64,
    },
    /// A Kafka partition, read from `offset` on (unbounded: it never ends).
    Partition {
        /// The topic.
        topic: String,
        /// The partition's number.
        partition: i32,
        /// The offset of the next record to read.
        offset: i64,
    },
}

/// Encodes a source position for a checkpoint.
pub fn encode_splits(splits: &[Split]) -> Vec<u8> {
    // Plain enums and integers always encode.
    postcard::to_allocvec(splits).unwrap_or_default()
}

/// Decodes a source position from a checkpoint.
pub fn decode_splits(bytes: &[u8]) -> Result<Vec<Split>, postcard::Error> {
    postcard::from_bytes(bytes)
}
