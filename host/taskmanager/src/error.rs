//! Why a subtask stopped without finishing, or why a TaskManager could not set one up.
//!
//! Causes are typed (the path, the source error, what was refused) rather than prose,
//! so that callers can tell a fenced-off attempt from a full disk without reading
//! messages. Messages stay one line: a subtask's failure reaches users as
//! `<subtask>: <error>`, and end-to-end tests match on parts of it.
//!
//! Every module of the crate returns these, so this one imports none of them but the
//! plain data they name ([`Split`]).

use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;

use thiserror::Error;
use weir_checkpoint::{FormatError, StorageError};
use weir_net::{FrameError, NetError};
use weir_state::StateError;
use weir_types::batch::BatchError;
use weir_types::deployment::RestoreFrom;
use weir_types::ids::JobId;
use weir_wasm::{LoadError, OperatorFailure};

use weir_checkpoint::{NotADirectory, Split};

/// Why a subtask stopped without finishing.
#[derive(Debug, Error)]
pub enum TaskError {
    /// A guest operator failed: trap, reported error, or malformed output.
    #[error("operator {name:?} failed: {failure}")]
    Operator {
        /// Operator name.
        name: String,
        /// What happened.
        failure: OperatorFailure,
    },
    /// The component could not be instantiated.
    #[error("could not start the operators: {0}")]
    Load(#[from] LoadError),
    /// A source failed.
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    /// A sink failed.
    #[error("sink failed: {0}")]
    Sink(#[from] SinkError),
    /// Keyed state failed.
    #[error("keyed state failed: {0}")]
    State(#[from] StateError),
    /// The job's checkpoints could not be opened, or a checkpoint not restored.
    #[error("checkpoint: {0}")]
    Checkpointing(#[from] CheckpointingError),
    /// Exchanging records with another TaskManager failed.
    #[error("record exchange failed: {0}")]
    Exchange(#[from] ExchangeError),
    /// The job was cancelled (because another subtask failed, or by the user).
    #[error("cancelled")]
    Cancelled,
    /// A newer attempt of the job superseded this one and fenced it off: what this
    /// attempt tried is refused (a zombie of a paused or partitioned TaskManager).
    #[error("refused {0}: a newer attempt of the job superseded this one")]
    Superseded(Refused),
    /// A bug in Weir.
    #[error("internal error: {0}")]
    Bug(#[from] Bug),
}

/// What a fenced-off attempt tried (see [`TaskError::Superseded`]).
#[derive(Debug, Error)]
pub enum Refused {
    /// Renaming a sink's pending file to its final name.
    #[error("committing {}", .0.display())]
    Commit(PathBuf),
    /// Creating a sink's pending file.
    #[error("writing {}", .0.display())]
    Write(PathBuf),
    /// Staging or committing rows of a PostgreSQL sink (the fence's words).
    #[error("writing to PostgreSQL ({0})")]
    Postgres(String),
}

/// Why a built-in source failed.
#[derive(Debug, Error)]
pub enum SourceError {
    /// Reading its file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of its file is not UTF-8.
    #[error("{}: the line at byte {at} is not valid UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Byte offset of the line.
        at: u64,
    },
    /// A file source whose path was never bound.
    #[error("a file source has no path")]
    NoPath,
    /// Its path is not one the job may read.
    #[error(transparent)]
    Access(#[from] weir_types::access::AccessError),
    /// Its position in the checkpoint does not decode.
    #[error("unreadable source position in the checkpoint: {0}")]
    Position(#[source] postcard::Error),
    /// The checkpoint holds another kind of source's position under this source's uid.
    #[error("a {reader} cannot resume {split:?}")]
    Resume {
        /// The kind of source, e.g. "generator".
        reader: &'static str,
        /// The split it was given.
        split: Split,
    },
    /// A connector source failed or cannot run here.
    #[error(transparent)]
    Connector(#[from] weir_connectors::ConnectorError),
}

/// Why a built-in sink failed.
#[derive(Debug, Error)]
pub enum SinkError {
    /// A connector sink failed or cannot run here.
    #[error(transparent)]
    Connector(#[from] weir_connectors::ConnectorError),
    /// A file operation on a sink's file or directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The output directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The output file could not be created.
    #[error("cannot open output {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing a shared text output (a file, or standard output) failed.
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),
    /// Another subtask panicked while writing the shared output.
    #[error("the output writer is poisoned by an earlier failure")]
    Poisoned,
    /// Its path is not one the job may write.
    #[error(transparent)]
    Access(#[from] weir_types::access::AccessError),
    /// A file of that name exists and this job did not create it.
    #[error("{} already exists and this job did not write it: it is never overwritten", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
    },
}

/// Why a job's checkpoints could not be opened or restored on a TaskManager.
#[derive(Debug, Error)]
pub enum CheckpointingError {
    /// The checkpoint storage could not be opened.
    #[error("checkpoint storage {dir}: {source}")]
    Storage {
        /// Its directory.
        dir: String,
        /// The underlying error.
        source: StorageError,
    },
    /// The checkpoint or savepoint to restore is unusable.
    #[error("restoring from {from}: {cause}")]
    Restore {
        /// What was restored from.
        from: RestoreFrom,
        /// Why it failed.
        #[source]
        cause: RestoreError,
    },
    /// Some of a vertex's keyed state could not be loaded.
    #[error("restoring the state of {uid} subtask {subtask}: {source}")]
    State {
        /// Uid of the vertex's first node.
        uid: String,
        /// The old subtask whose files failed.
        subtask: u32,
        /// The underlying error.
        source: weir_checkpoint::CheckpointError,
    },
}

/// Why a checkpoint or savepoint cannot be restored from.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The deployment names a checkpoint but no storage to find it in.
    #[error("the job has no checkpoint storage")]
    NoStorage,
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The checkpoint's metadata does not decode.
    #[error(transparent)]
    Metadata(#[from] FormatError),
    /// The savepoint cannot be loaded.
    #[error(transparent)]
    Savepoint(#[from] weir_checkpoint::CheckpointError),
    /// The savepoint's directory is not one the job may read (boxed: rare, and large).
    #[error(transparent)]
    Access(Box<weir_types::access::AccessError>),
    /// A savepoint's path that names no directory.
    #[error(transparent)]
    Location(#[from] NotADirectory),
    /// Key groups cannot be remapped between different maximum parallelisms.
    #[error("it has {checkpoint} key groups, the job {job}")]
    KeyGroups {
        /// The checkpoint's.
        checkpoint: u32,
        /// The job's.
        job: u32,
    },
}

/// Why a subtask's snapshot could not be persisted. It reaches the JobManager as text
/// (the acknowledgement crosses the wire), which abandons the checkpoint.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Reading the captured state failed; weir-state reports this as text.
    #[error("{0}")]
    Read(String),
    /// The changes since the previous capture could not be read.
    #[error(transparent)]
    Changes(#[from] StateError),
    /// An entry cannot be written to a state file.
    #[error(transparent)]
    Encode(#[from] FormatError),
    /// The state file could not be stored.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Why records could not be exchanged with another TaskManager.
#[derive(Debug, Error)]
pub enum ExchangeError {
    /// A remote producer's stream broke or carried garbage.
    #[error("input from {peer}: {source}")]
    Input {
        /// The producer's node name.
        peer: String,
        /// What went wrong.
        source: InputError,
    },
    /// Sending to a remote consumer failed.
    #[error("output to subtask {subtask} of vertex {vertex} at {addr}: {source}")]
    Output {
        /// The consumer's TaskManager.
        addr: SocketAddr,
        /// The consuming vertex.
        vertex: u32,
        /// The consuming subtask.
        subtask: u32,
        /// What went wrong.
        source: OutputError,
    },
    /// The address of a TaskManager answered with another kind of node.
    #[error("{addr} is {name:?}, not a taskmanager")]
    NotATaskManager {
        /// The address dialled.
        addr: SocketAddr,
        /// The node name of whoever answered.
        name: String,
    },
}

/// What was wrong with a remote producer's data stream.
#[derive(Debug, Error)]
pub enum InputError {
    /// A batch frame that breaks the batch layout.
    #[error("invalid record batch: {0}")]
    Batch(#[source] BatchError),
    /// A barrier frame of the wrong length.
    #[error("barrier frame of {0} bytes")]
    Barrier(usize),
    /// A watermark or idleness frame of the wrong length or value.
    #[error("watermark frame of {0} bytes")]
    Watermark(usize),
    /// A frame of no known kind.
    #[error("unknown data frame tag {0}")]
    Tag(u8),
    /// A frame without even a tag.
    #[error("empty data frame")]
    Empty,
    /// The stream itself failed (reset, lost connection, bad framing).
    #[error(transparent)]
    Stream(#[from] FrameError),
}

/// Why sending to a remote consumer failed.
#[derive(Debug, Error)]
pub enum OutputError {
    /// Connecting, or opening the stream, failed.
    #[error(transparent)]
    Connect(#[from] NetError),
    /// Writing the stream failed (stopped by the consumer, lost connection).
    #[error(transparent)]
    Stream(#[from] FrameError),
}

/// A bug in Weir: a state the code should never reach.
#[derive(Debug, Error)]
pub enum Bug {
    /// A chained operator names a component index the job does not have.
    #[error("operator {operator:?} names a missing component")]
    MissingComponent {
        /// The operator's name.
        operator: String,
    },
    /// Operators deployed without the sandbox and components to run them.
    #[error("operators deployed without a component")]
    NoComponents,
    /// A keyed operator deployed without keyed state.
    #[error("keyed operator deployed without state")]
    NoKeyedState,
    /// A chain run without operators.
    #[error("empty operator chain")]
    EmptyChain,
    /// A batch that should have been checked already breaks the layout.
    #[error("{at}: {source}")]
    InvalidBatch {
        /// Where it was found.
        at: &'static str,
        /// How it breaks the layout.
        source: BatchError,
    },
    /// A remote channel lost its stream right after opening it.
    #[error("data stream vanished")]
    StreamVanished,
    /// A subtask's thread panicked.
    #[error("the subtask thread panicked")]
    Panicked,
    /// A subtask's thread could not be started.
    #[error("cannot spawn a task thread: {0}")]
    Spawn(#[source] io::Error),
    /// A deployment that does not hold together.
    #[error("deployment of job {job}: {fault}")]
    Deployment {
        /// The job.
        job: JobId,
        /// What does not fit.
        #[source]
        fault: DeploymentFault,
    },
}

/// What does not fit in a deployment.
#[derive(Debug, Error)]
pub enum DeploymentFault {
    /// A placement names a TaskManager the deployment does not list.
    #[error("placement names an unknown taskmanager ({0})")]
    UnknownTaskManager(u32),
    /// A TaskManager's data-plane address does not parse.
    #[error("bad taskmanager address {address:?}: {source}")]
    BadAddress {
        /// The address.
        address: String,
        /// Why it does not parse.
        source: AddrParseError,
    },
    /// The placement does not have one entry per subtask of every vertex.
    #[error("placement does not match the graph")]
    PlacementMismatch,
    /// An edge names a vertex the graph does not have.
    #[error("an edge of vertex {0} names a missing vertex")]
    MissingVertex(usize),
    /// The components handed to the TaskManager are not the job's.
    #[error("the components given do not match the job's")]
    ComponentMismatch,
    /// A subtask's peer is on another TaskManager, but there is no data plane.
    #[error("a remote subtask but no data plane")]
    NoDataPlane,
    /// An operator node without code.
    #[error("no code for operator {uid:?}")]
    NoCode {
        /// The node's uid.
        uid: String,
    },
    /// A vertex without nodes.
    #[error("empty vertex")]
    EmptyVertex,
    /// A subtask's input channels were not set up.
    #[error("inputs missing")]
    InputsMissing,
    /// A local consumer's channel was not set up.
    #[error("local channel missing")]
    LocalChannelMissing,
}

impl From<weir_types::access::AccessError> for RestoreError {
    fn from(e: weir_types::access::AccessError) -> Self {
        RestoreError::Access(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users and end-to-end tests read these messages; the JobManager still builds
    /// the two text-only ones.
    #[test]
    fn messages_keep_their_wording() {
        let refused = TaskError::Superseded(Refused::Commit("/out/part-0-1-a0".into()));
        assert_eq!(refused.to_string(), "refused committing /out/part-0-1-a0: a newer attempt of the job superseded this one");
        let input = TaskError::from(ExchangeError::Input { peer: "taskmanager-2".into(), source: InputError::Barrier(3) });
        assert_eq!(input.to_string(), "record exchange failed: input from taskmanager-2: barrier frame of 3 bytes");
        let sink = TaskError::from(SinkError::Open { path: "/out".into(), source: io::Error::from(io::ErrorKind::PermissionDenied) });
        assert!(sink.to_string().starts_with("sink failed: cannot open output /out: "), "{sink}");
    }
}
