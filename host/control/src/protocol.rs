//! Control-stream messages. Each connection opens one control stream whose first
//! message says what the peer is; the certificate's common name must agree.

use serde::{Deserialize, Serialize};

/// The first message on a control stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Hello {
    /// A TaskManager offering slots. Its certificate name must start with
    /// [`TASKMANAGER_PREFIX`].
    TaskManager {
        /// Slots it offers.
        slots: u32,
    },
    /// A user or tool asking questions.
    Client,
}

/// Certificate names of TaskManagers start with this.
pub const TASKMANAGER_PREFIX: &str = "taskmanager";

/// Messages to the JobManager. The first on a stream is always a `Hello`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToJobManager {
    /// What the peer is.
    Hello(Hello),
    /// A TaskManager is alive.
    Heartbeat,
    /// A client asks for the cluster's resource view.
    Status,
}

/// Messages from the JobManager.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FromJobManager {
    /// The TaskManager is registered under this id.
    Registered {
        /// Its id in this JobManager's registry.
        id: u64,
        /// How often to send heartbeats, in milliseconds.
        heartbeat_ms: u64,
    },
    /// The answer to [`ToJobManager::Status`].
    Status(ClusterView),
}

/// The resource view: every TaskManager the JobManager knows, alive or lost.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterView {
    /// TaskManagers, by id.
    pub taskmanagers: Vec<TaskManagerInfo>,
    /// Slots of the alive TaskManagers.
    pub free_slots: u32,
}

/// One TaskManager as the JobManager sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskManagerInfo {
    /// Registry id.
    pub id: u64,
    /// Certificate name.
    pub name: String,
    /// Network address it connected from.
    pub addr: String,
    /// Slots it offers.
    pub slots: u32,
    /// False once its heartbeats stopped for longer than the timeout.
    pub alive: bool,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
}
