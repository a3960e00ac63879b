//! A job's cancel flag, which every blocking wait of its subtasks polls (channel sends
//! and receives, network writes, a suspended source).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared by all subtasks of a job: once set, every subtask stops at its next batch.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
