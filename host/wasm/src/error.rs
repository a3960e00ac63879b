use thiserror::Error;

/// Why a component was refused. All of these are the submitter's to fix.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Larger than the configured limit; refused before compiling, since compiling
    /// untrusted code is itself a denial-of-service risk.
    #[error("component is {size} bytes, over the limit of {limit} bytes (refused before compiling)")]
    TooLarge {
        /// Size of the file.
        size: u64,
        /// Configured limit.
        limit: u64,
    },
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Does not start with the Wasm magic bytes.
    #[error("not a WebAssembly file (it does not start with \\0asm)")]
    NotWasm,
    /// A core module, not a component.
    #[error("this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`")]
    CoreModule,
    /// The component does not validate or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not implement the world it is used as.
    #[error("component does not implement weir:dataflow/{world}@{expected}: {detail}")]
    WrongWorld {
        /// The world asked for (`job-component` or `operator-component`).
        world: &'static str,
        /// The WIT version this host implements.
        expected: &'static str,
        /// What is missing or mismatched.
        detail: String,
    },
    /// The component's `plan` failed or returned an unusable plan.
    #[error("the job's plan failed: {0}")]
    Plan(String),
    /// The compiled-component cache could not be used (the host's to fix).
    #[error("component cache at {path}: {source}")]
    Cache {
        /// Cache file or directory.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The host could not set up the sandbox (internal).
    #[error("sandbox setup failed: {0}")]
    Sandbox(String),
}

/// How an instance trapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// The call used up its fuel budget: an endless or far too slow loop.
    FuelExhausted {
        /// Budget of the call.
        budget: u64,
    },
    /// The call ran past its wall-clock deadline (`Limits::call_timeout`).
    Deadline {
        /// The deadline of one call.
        timeout: std::time::Duration,
    },
    /// Linear memory growth past the per-instance limit.
    MemoryLimit {
        /// Configured limit in bytes.
        limit: usize,
        /// Size the guest asked for.
        requested: usize,
    },
    /// The guest panicked; the message is what the guest SDK reported.
    Panic(String),
    /// The guest called a WASI interface its job was not granted (the message names
    /// it).
    NotGranted(String),
    /// Any other trap (unreachable, out-of-bounds access, ...).
    Other(String),
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrapKind::FuelExhausted { budget } => {
                write!(f, "fuel exhausted (budget {budget} per call): the operator loops forever or is far too slow")
            }
            TrapKind::Deadline { timeout } => {
                write!(f, "ran longer than {} in one call (the call timeout): the operator loops, blocks or is far too slow", human(*timeout))
            }
            TrapKind::MemoryLimit { limit, requested } => {
                write!(f, "memory limit hit: tried to grow linear memory to {requested} bytes, limit is {} MiB", limit >> 20)
            }
            // Guest SDKs usually say "panicked at <location>: ..." themselves.
            TrapKind::Panic(msg) if msg.starts_with("panicked") => write!(f, "{msg}"),
            TrapKind::Panic(msg) => write!(f, "panicked: {msg}"),
            TrapKind::NotGranted(msg) => write!(f, "refused: {msg}"),
            TrapKind::Other(msg) => write!(f, "trapped: {msg}"),
        }
    }
}

/// `10 s`, `250 ms`: how a deadline reads in an error.
fn human(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

/// Why an operator call failed. Every variant fails the subtask; none harms the host.
#[derive(Debug, Error)]
pub enum OperatorFailure {
    /// The instance trapped and is poisoned.
    #[error("{0}")]
    Trap(TrapKind),
    /// The operator returned an error value.
    #[error("{0}")]
    Reported(String),
    /// The operator's output broke the batch layout.
    #[error("returned a malformed output batch: {0}")]
    MalformedOutput(#[from] weir_types::batch::BatchError),
    /// The instance trapped earlier and cannot be entered again.
    #[error("instance is poisoned by an earlier trap")]
    Poisoned,
}
