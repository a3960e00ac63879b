//! Event time: the watermark strategies a plan's nodes carry, timers as operators see
//! them, and the clock operators read the watermark and processing time from.
//!
//! The clock is a seam: operators hold a [`Clock`] that is the host's `clock` import
//! in a component, and a test clock in the native unit tests (the WIT imports exist
//! only inside a component). [`BatchClock`] asks it at most once per batch.

use core::cell::Cell;
use std::rc::Rc;

pub use weir_batch::TimeDomain;

use crate::wit::weir::dataflow::plan_types as wit;

/// How a node's output timestamps become watermarks: Flink's
/// `WatermarkStrategy.forBoundedOutOfOrderness`, with optional idleness.
///
/// The host tracks the newest timestamp of each subtask's output; the watermark is that
/// minus `out_of_orderness_ms`, minus one. A watermark promises that no record at or
/// before it follows, so event-time timers and windows fire on it. Set it on a source
/// with [`Stream::with_watermarks`](crate::Stream::with_watermarks) or together with
/// the timestamps with [`Stream::assign_timestamps`](crate::Stream::assign_timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatermarkStrategy {
    /// How far (ms) a record may lag behind the newest timestamp seen and still be on
    /// time.
    pub out_of_orderness_ms: u64,
    /// A source split with nothing to read for this long (processing time, ms) stops
    /// holding back the watermark until it has records again; a subtask whose splits
    /// are all idle goes idle downstream. `None`: never idle.
    pub idle_timeout_ms: Option<u64>,
}

impl WatermarkStrategy {
    /// Records may arrive up to `out_of_orderness_ms` after newer ones.
    pub fn bounded(out_of_orderness_ms: u64) -> Self {
        WatermarkStrategy { out_of_orderness_ms, idle_timeout_ms: None }
    }

    /// Timestamps never decrease (Flink's `forMonotonousTimestamps`): `bounded(0)`.
    pub fn monotonous() -> Self {
        Self::bounded(0)
    }

    /// A subtask silent for `idle_timeout_ms` no longer holds back the watermark.
    pub fn with_idleness(self, idle_timeout_ms: u64) -> Self {
        WatermarkStrategy { idle_timeout_ms: Some(idle_timeout_ms), ..self }
    }

    pub(crate) fn to_wit(self) -> wit::WatermarkStrategy {
        wit::WatermarkStrategy { out_of_orderness_ms: self.out_of_orderness_ms, idle_timeout_ms: self.idle_timeout_ms }
    }
}

/// A timer that fired: when it was set for, and on which clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    /// The time it was set for (ms). Records emitted while it fires get this timestamp.
    pub ts: i64,
    /// Its clock.
    pub domain: TimeDomain,
}

/// Where operators read the time from.
pub(crate) trait Clock {
    /// The watermark of the input of the current batch (`i64::MIN` before the first).
    fn watermark(&self) -> i64;
    /// Wall-clock ms since the Unix epoch.
    fn processing_time(&self) -> i64;
}

/// The host's `clock` import; in native test builds, [`test_host`]'s thread-local
/// stand-in, so whole jobs can run through the dispatcher.
struct HostClock;

impl Clock for HostClock {
    fn watermark(&self) -> i64 {
        #[cfg(not(test))]
        let watermark = crate::wit::weir::dataflow::clock::current_watermark();
        #[cfg(test)]
        let watermark = test_host::WATERMARK.with(Cell::get);
        watermark
    }

    fn processing_time(&self) -> i64 {
        #[cfg(not(test))]
        let now = crate::wit::weir::dataflow::clock::current_processing_time();
        #[cfg(test)]
        let now = test_host::PROCESSING_TIME.with(Cell::get);
        now
    }
}

/// What the host's clock says in native tests, per test thread (like the runtime).
#[cfg(test)]
pub(crate) mod test_host {
    use core::cell::Cell;

    thread_local! {
        pub(crate) static WATERMARK: Cell<i64> = const { Cell::new(i64::MIN) };
        pub(crate) static PROCESSING_TIME: Cell<i64> = const { Cell::new(0) };
    }
}

/// The clock of operators in a component.
pub(crate) fn host_clock() -> Rc<dyn Clock> {
    Rc::new(HostClock)
}

/// The clock during one `process` or `on-timer` call: each time is asked once, on
/// first use, so a batch sees one watermark and one processing time however many
/// records read them (and a batch that reads neither costs no host call).
pub(crate) struct BatchClock<'c> {
    clock: &'c dyn Clock,
    watermark: Cell<Option<i64>>,
    processing_time: Cell<Option<i64>>,
}

impl<'c> BatchClock<'c> {
    pub(crate) fn new(clock: &'c dyn Clock) -> Self {
        BatchClock { clock, watermark: Cell::new(None), processing_time: Cell::new(None) }
    }

    #[inline(always)]
    pub(crate) fn watermark(&self) -> i64 {
        match self.watermark.get() {
            Some(w) => w,
            None => ask(&self.watermark, || self.clock.watermark()),
        }
    }

    #[inline(always)]
    pub(crate) fn processing_time(&self) -> i64 {
        match self.processing_time.get() {
            Some(t) => t,
            None => ask(&self.processing_time, || self.clock.processing_time()),
        }
    }
}

/// The first read of a batch: out of line, the per-record path only loads the cache.
#[cold]
#[inline(never)]
fn ask(cache: &Cell<Option<i64>>, read: impl FnOnce() -> i64) -> i64 {
    let t = read();
    cache.set(Some(t));
    t
}

/// A clock the native tests set by hand, counting how often it is asked.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestClock {
    pub(crate) watermark: Cell<i64>,
    pub(crate) processing_time: Cell<i64>,
    pub(crate) reads: Cell<u32>,
}

#[cfg(test)]
impl TestClock {
    /// A shared clock at watermark `watermark` and processing time 0.
    pub(crate) fn at(watermark: i64) -> Rc<TestClock> {
        let clock = TestClock::default();
        clock.watermark.set(watermark);
        Rc::new(clock)
    }
}

#[cfg(test)]
impl Clock for TestClock {
    fn watermark(&self) -> i64 {
        self.reads.set(self.reads.get() + 1);
        self.watermark.get()
    }

    fn processing_time(&self) -> i64 {
        self.reads.set(self.reads.get() + 1);
        self.processing_time.get()
    }
}
