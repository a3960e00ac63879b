//! Weir's checkpoint storage and the on-disk formats of checkpoints.
//!
//! - [`storage`]: [`CheckpointStorage`], the few whole-file operations checkpoints need
//!   (atomic durable write, read, list, delete) with path validation, and
//!   [`DirStorage`], a directory shared by every process on one machine.
//! - [`state_file`]: one subtask's keyed state at one checkpoint, full or delta, with a
//!   checked decoder that never trusts a length; [`key_group_of`] for rescaling.
//! - [`meta`]: [`CheckpointMeta`], what a completed checkpoint consists of (vertices,
//!   subtasks, state-file chains, opaque source positions and sink transactions).
//! - [`store`]: [`JobCheckpoints`], one job's checkpoints: the directory layout,
//!   completion (metadata last), finding the newest intact checkpoint (falling back past
//!   corrupted ones), loading state for a key-group range, and retention.
//! - [`savepoint`]: exporting a completed checkpoint as a relocatable savepoint, and
//!   loading one; [`savepoint_location`], how a savepoint's directory is addressed.
//! - [`split`]: a source's position, the unread rest of its input as replayable splits
//!   (generator ranges, file byte ranges).
//!
//! Both formats start with magic bytes and a format version and end with an xxh3-64
//! checksum; see [`state_file`] and [`meta`] for the layouts.
//!
//! This crate is NOT the checkpoint protocol: it does not inject barriers, decide when
//! to checkpoint or whether a delta or a full file is due, snapshot fjall, or talk to
//! the TaskManagers. It stores and checks what those parts produce, and hands it back
//! on restore. It knows nothing of keys beyond their first two bytes (the key group),
//! nor of sink transactions beyond their bytes.

mod format;
pub mod meta;
pub mod savepoint;
pub mod split;
pub mod state_file;
pub mod storage;
pub mod store;

pub use format::FormatError;
pub use meta::{CheckpointMeta, TaskMeta, VertexMeta, decode_meta, encode_meta};
pub use savepoint::{NotADirectory, load_savepoint, savepoint_location};
pub use split::{Split, decode_splits, encode_splits};
pub use state_file::{FileKind, StateFile, StateFileView, StateFileWriter, decode_state_file, key_group_of};
pub use storage::{CheckpointStorage, DirStorage, StorageError, validate_path};
pub use store::{
    CheckpointError, JobCheckpoints, METADATA_FILE, Restorable, RestoredState, Skipped, checkpoint_of_metadata_path, load_state, verify,
};

#[cfg(test)]
mod tests;
