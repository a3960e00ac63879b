//! What both Rust guest SDKs share beyond the layout (feature `guest`).
//!
//! Their WIT bindings are generated per world (`job-component`, `operator-component`),
//! so the types of the `log` import differ between them; what is here takes them as
//! arguments: [`install_panic_hook`] a function that logs an error, [`log_functions!`]
//! the generated `log` function and `Level` enum.
//!
//! [`log_functions!`]: crate::log_functions

use alloc::boxed::Box;
use alloc::format;

/// Reports panics to the host's log, with their location, right before the instance
/// traps, so the host can name the panic in the operator's error. Installs the hook
/// once per instance; later calls cost one atomic load. Does nothing outside Wasm (the
/// SDKs' native tests keep the test harness's hook).
#[inline]
pub fn install_panic_hook(log_error: fn(&str)) {
    if cfg!(target_arch = "wasm32") {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| std::panic::set_hook(Box::new(move |info| log_error(&panic_message(info)))));
    }
}

/// `panicked at FILE:LINE:COLUMN: MESSAGE`, as the host shows it.
fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> alloc::string::String {
    let msg = info.payload_as_str().unwrap_or("(non-string panic payload)");
    match info.location() {
        Some(l) => format!("panicked at {}:{}:{}: {msg}", l.file(), l.line(), l.column()),
        None => format!("panicked: {msg}"),
    }
}

/// Defines `debug`, `info`, `warn` and `error`, each `fn(&str)`, over a world's generated
/// log import: `log_functions!(log, Level)` with `log` and `Level` of
/// `weir::dataflow::log` in scope. Expand it inside the SDK's `pub mod log`.
#[macro_export]
macro_rules! log_functions {
    ($log:ident, $level:ident) => {
        /// Fine-grained detail.
        pub fn debug(msg: &str) {
            $log($level::Debug, msg)
        }

        /// Normal operation.
        pub fn info(msg: &str) {
            $log($level::Info, msg)
        }

        /// Something unexpected that the operator survived.
        pub fn warn(msg: &str) {
            $log($level::Warn, msg)
        }

        /// A failure.
        pub fn error(msg: &str) {
            $log($level::Error, msg)
        }
    };
}
