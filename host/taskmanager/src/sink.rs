//! Built-in sinks. Text sinks write `key<TAB>value` lines; the SDK has already turned
//! key and value into UTF-8 text before them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use weir_types::batch::records;

use crate::deploy::TaskError;

/// A text destination shared by all subtasks of a sink; each batch is written under
/// the lock in one piece, so lines of different subtasks never interleave.
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// Where a sink subtask's records go.
pub enum Sink {
    /// Text lines into a shared writer.
    Text {
        /// The destination.
        out: SharedWriter,
        /// Lines of the current batch, reused.
        buf: Vec<u8>,
    },
    /// Dropped.
    Discard,
}

impl Sink {
    /// A text sink into `out`.
    pub fn text(out: SharedWriter) -> Self {
        Sink::Text { out, buf: Vec::new() }
    }

    /// Writes one valid plain batch.
    pub fn write(&mut self, batch: &[u8]) -> Result<(), TaskError> {
        let Sink::Text { out, buf } = self else {
            return Ok(());
        };
        buf.clear();
        for r in records(batch) {
            let r = r.map_err(|e| TaskError::Internal(format!("sink got an invalid batch: {e}")))?;
            buf.extend_from_slice(r.key);
            buf.push(b'\t');
            buf.extend_from_slice(r.value);
            buf.push(b'\n');
        }
        let mut w = out.lock().map_err(|_| TaskError::Sink("the output writer is poisoned by an earlier failure".into()))?;
        w.write_all(buf).map_err(|e| TaskError::Sink(e.to_string()))
    }

    /// A checkpoint barrier passed: everything before it must be on its way out.
    pub fn barrier(&mut self, _checkpoint: u64) -> Result<(), TaskError> {
        self.finish()
    }

    /// Flushes buffered output.
    pub fn finish(&mut self) -> Result<(), TaskError> {
        if let Sink::Text { out, .. } = self {
            let mut w = out.lock().map_err(|_| TaskError::Sink("the output writer is poisoned by an earlier failure".into()))?;
            w.flush().map_err(|e| TaskError::Sink(e.to_string()))?;
        }
        Ok(())
    }
}
