//! One sandboxed instance of a job component and the host side of its imports.

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, Level, OperatorError, StateError, job_exports, operator_exports, timers_exports};
use crate::error::{LoadError, OperatorFailure, TrapKind};
use crate::grants::Sandbox;
use crate::runtime::{JobComponent, Runtime, one_line};
use weir_types::plan::JobPlan;

/// Where an operator instance runs, as told to the guest's `open`.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo {
    /// Subtask index.
    pub subtask: u32,
    /// Operator parallelism.
    pub parallelism: u32,
    /// Key groups of the job.
    pub max_parallelism: u32,
}

/// Names an operator in a call: its id inside the component, and the id its keyed
/// state is scoped by (the operator's node in the job, which differs from the guest id
/// when a job manifest assembles operators from several components).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRef {
    /// Operator id passed to the component.
    pub guest: u32,
    /// Operator id of its state (and of `KeyedStateAccess` calls).
    pub state: u32,
}

/// Why the host refused a keyed-state call.
#[derive(Debug, Clone)]
pub enum StateAccessError {
    /// The key belongs to another subtask's key groups.
    ForeignKey,
    /// The calling operator is not keyed.
    NotKeyed,
    /// Storage failed.
    Backend(String),
}

/// All entries of one key's map state, as (field, value) pairs ordered by field.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The task's keyed state as the guest's `keyed-state` imports see it. The executor
/// implements it over its state backend; `op` is the operator being called.
pub trait KeyedStateAccess: Send {
    /// Reads a map-state entry.
    fn map_get(&mut self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<Option<Vec<u8>>, StateAccessError>;
    /// Writes a map-state entry.
    fn map_put(&mut self, op: u32, name: &str, key: &[u8], field: &[u8], value: &[u8]) -> Result<(), StateAccessError>;
    /// Removes a map-state entry.
    fn map_remove(&mut self, op: u32, name: &str, key: &[u8], field: &[u8]) -> Result<(), StateAccessError>;
    /// All entries of a key's map state, by field.
    fn map_entries(&mut self, op: u32, name: &str, key: &[u8]) -> Result<MapEntries, StateAccessError>;
    /// Removes a key's whole map state.
    fn map_clear(&mut self, op: u32, name: &str, key: &[u8]) -> Result<(), StateAccessError>;
    /// Reads an entry of the operator's broadcast state (the same on every subtask).
    fn broadcast_get(&mut self, op: u32, name: &str, field: &[u8]) -> Result<Option<Vec<u8>>, StateAccessError>;
    /// Writes an entry of the operator's broadcast state.
    fn broadcast_put(&mut self, op: u32, name: &str, field: &[u8], value: &[u8]) -> Result<(), StateAccessError>;
    /// Removes an entry of the operator's broadcast state.
    fn broadcast_remove(&mut self, op: u32, name: &str, field: &[u8]) -> Result<(), StateAccessError>;
    /// All entries of the operator's broadcast state `name`, by field.
    fn broadcast_entries(&mut self, op: u32, name: &str) -> Result<MapEntries, StateAccessError>;
}

/// Longest log message kept from a guest; the rest is cut.
const MAX_LOG_BYTES: usize = 4096;

pub(crate) struct HostState {
    wasi: WasiCtx,
    /// What this instance's WASI grants (read by the gated clocks).
    pub(crate) sandbox: Sandbox,
    table: ResourceTable,
    limiter: MemoryLimiter,
    label: String,
    current_op: Option<u32>,
    last_error_log: Option<String>,
    state: Option<Box<dyn KeyedStateAccess>>,
    /// What the `clock` imports answer: set by the subtask before each call, so the
    /// guest sees the watermark of the batch it processes and the subtask's clock
    /// (which tests can drive).
    time: Time,
    /// Each operator's state versions (`state-version`), by its state id.
    versions: std::collections::HashMap<u32, StateVersions>,
}

/// One operator's state format versions.
#[derive(Debug, Clone, Copy, Default)]
struct StateVersions {
    /// What its code declared (0 until it does).
    declared: u32,
    /// What the code that wrote its restored state declared.
    restored: Option<u32>,
}

/// The times an operator call sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    /// The subtask's input watermark.
    pub watermark: i64,
    /// Processing time, ms since the Unix epoch.
    pub processing: i64,
}

impl Default for Time {
    fn default() -> Self {
        Self { watermark: i64::MIN, processing: 0 }
    }
}

struct MemoryLimiter {
    limit: usize,
    hit: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = Some(desired);
            // Trapping (instead of failing the grow) makes the cause visible: a guest
            // allocator would otherwise abort with an unrelated-looking trap.
            return Err(wasmtime::Error::msg("memory limit hit"));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::weir::dataflow::log::Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let label = &self.label;
        match level {
            Level::Debug => tracing::debug!(target: "weir::guest", "{label}: {message}"),
            Level::Info => tracing::info!(target: "weir::guest", "{label}: {message}"),
            Level::Warn => tracing::warn!(target: "weir::guest", "{label}: {message}"),
            Level::Error => {
                tracing::debug!(target: "weir::guest", "{label}: {message}");
                self.last_error_log = Some(message);
            }
        }
    }
}

impl HostState {
    fn with_state<T>(&mut self, f: impl FnOnce(&mut dyn KeyedStateAccess, u32) -> Result<T, StateAccessError>) -> Result<T, StateError> {
        let (Some(state), Some(op)) = (self.state.as_deref_mut(), self.current_op) else {
            return Err(StateError::NotKeyed);
        };
        f(state, op).map_err(|e| match e {
            StateAccessError::ForeignKey => StateError::ForeignKey,
            StateAccessError::NotKeyed => StateError::NotKeyed,
            StateAccessError::Backend(m) => StateError::Backend(m),
        })
    }
}

impl bindings::weir::dataflow::plan_types::Host for HostState {}

impl bindings::weir::dataflow::clock::Host for HostState {
    fn current_watermark(&mut self) -> i64 {
        self.time.watermark
    }
    fn current_processing_time(&mut self) -> i64 {
        self.time.processing
    }
}

impl bindings::weir::dataflow::state_version::Host for HostState {
    fn declare(&mut self, version: u32) {
        if let Some(op) = self.current_op {
            self.versions.entry(op).or_default().declared = version;
        }
    }
    fn restored(&mut self) -> Option<u32> {
        self.versions.get(&self.current_op?)?.restored
    }
}

impl bindings::weir::dataflow::keyed_state::Host for HostState {
    fn map_get(&mut self, name: String, key: Vec<u8>, field: Vec<u8>) -> Result<Option<Vec<u8>>, StateError> {
        self.with_state(|s, op| s.map_get(op, &name, &key, &field))
    }
    fn map_put(&mut self, name: String, key: Vec<u8>, field: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        self.with_state(|s, op| s.map_put(op, &name, &key, &field, &value))
    }
    fn map_remove(&mut self, name: String, key: Vec<u8>, field: Vec<u8>) -> Result<(), StateError> {
        self.with_state(|s, op| s.map_remove(op, &name, &key, &field))
    }
    fn map_entries(&mut self, name: String, key: Vec<u8>) -> Result<MapEntries, StateError> {
        self.with_state(|s, op| s.map_entries(op, &name, &key))
    }
    fn map_clear(&mut self, name: String, key: Vec<u8>) -> Result<(), StateError> {
        self.with_state(|s, op| s.map_clear(op, &name, &key))
    }
    fn broadcast_get(&mut self, name: String, field: Vec<u8>) -> Result<Option<Vec<u8>>, StateError> {
        self.with_state(|s, op| s.broadcast_get(op, &name, &field))
    }
    fn broadcast_put(&mut self, name: String, field: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        self.with_state(|s, op| s.broadcast_put(op, &name, &field, &value))
    }
    fn broadcast_remove(&mut self, name: String, field: Vec<u8>) -> Result<(), StateError> {
        self.with_state(|s, op| s.broadcast_remove(op, &name, &field))
    }
    fn broadcast_entries(&mut self, name: String) -> Result<MapEntries, StateError> {
        self.with_state(|s, op| s.broadcast_entries(op, &name))
    }
}

/// The exports of one instance the host calls.
struct Exports {
    operator: operator_exports::Guest,
    job: Option<job_exports::Guest>,
    timers: Option<timers_exports::Guest>,
}

/// One instance of a component, owned by one subtask (not shared between threads).
pub struct Instance {
    store: Store<HostState>,
    exports: Exports,
    fuel_per_call: u64,
    /// Epoch ticks each call may run, and the timeout they stand for (for the error).
    deadline_ticks: Option<u64>,
    call_timeout: std::time::Duration,
    /// Fuel all calls burned so far, trapped ones included.
    fuel_burned: u64,
    poisoned: bool,
}

impl Instance {
    /// Instantiates `component` with the WASI `sandbox` grants. `label` names the
    /// instance in logs.
    pub fn new(runtime: &Runtime, component: &JobComponent, label: &str, sandbox: Sandbox) -> Result<Self, LoadError> {
        let limits = runtime.limits();
        let host = HostState {
            wasi: sandbox.wasi(),
            sandbox,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: limits.max_memory_bytes, hit: None },
            label: label.to_string(),
            current_op: None,
            last_error_log: None,
            state: None,
            time: Time::default(),
            versions: Default::default(),
        };
        let mut store = Store::new(runtime.engine(), host);
        store.limiter(|s| &mut s.limiter);
        store.set_fuel(limits.plan_fuel).map_err(|e| LoadError::Sandbox(one_line(&e)))?;
        // Instantiation runs guest code (start functions, the SDK's setup) too.
        let deadline_ticks = runtime.call_deadline_ticks();
        if let Some(ticks) = deadline_ticks {
            store.set_epoch_deadline(ticks);
        }
        let failed = |e: wasmtime::Error| LoadError::Invalid(format!("instantiation failed: {}", one_line(&e)));
        let instance = component.pre.instantiate(&mut store).map_err(failed)?;
        let operator = component.operator.load(&mut store, &instance).map_err(failed)?;
        let job = component.job.as_ref().map(|j| j.load(&mut store, &instance)).transpose().map_err(failed)?;
        let timers = component.timers.as_ref().map(|t| t.load(&mut store, &instance)).transpose().map_err(failed)?;
        Ok(Self {
            store,
            exports: Exports { operator, job, timers },
            fuel_per_call: limits.fuel_per_call,
            deadline_ticks,
            call_timeout: limits.call_timeout,
            fuel_burned: 0,
            poisoned: false,
        })
    }

    /// Gives the instance access to the task's keyed state.
    pub fn set_state_access(&mut self, state: Box<dyn KeyedStateAccess>) {
        self.store.data_mut().state = Some(state);
    }

    /// What `state-version.restored` answers operator `op`: the state format version
    /// declared by the code whose state it starts from. Set before its `open`.
    pub fn set_restored_version(&mut self, op: OpRef, version: Option<u32>) {
        self.store.data_mut().versions.entry(op.state).or_default().restored = version;
    }

    /// The state format version operator `op`'s code declared (`state-version.declare`),
    /// 0 if it declared none: recorded with each snapshot of its state.
    pub fn declared_version(&self, op: OpRef) -> u32 {
        self.store.data().versions.get(&op.state).map_or(0, |v| v.declared)
    }

    /// Calls the component's `plan` with the small plan fuel budget.
    pub fn plan(&mut self, args: &[(String, String)], fuel: u64) -> Result<JobPlan, OperatorFailure> {
        let r = self.guarded(fuel, None, |e, store| match &e.job {
            Some(job) => job.call_plan(store, args),
            None => Ok(Err("the component exports no plan (weir:dataflow/job)".to_string())),
        })?;
        r.map(Into::into).map_err(OperatorFailure::Reported)
    }

    /// Calls `open` for the component's operator `op.guest`.
    pub fn open(&mut self, op: OpRef, info: TaskInfo, args: &[(String, String)]) -> Result<(), OperatorFailure> {
        let info = bindings::WitTaskInfo { subtask: info.subtask, parallelism: info.parallelism, max_parallelism: info.max_parallelism };
        let fuel = self.fuel_per_call;
        let r = self.guarded(fuel, Some(op.state), |e, store| e.operator.call_open(store, op.guest, info, args))?;
        r.map_err(reported)
    }

    /// Calls `process` for operator `op.guest` on one batch and returns the raw output;
    /// the caller checks it against the batch layout.
    pub fn process(&mut self, op: OpRef, batch: &[u8]) -> Result<Vec<u8>, OperatorFailure> {
        let fuel = self.fuel_per_call;
        let r = self.guarded(fuel, Some(op.state), |e, store| e.operator.call_process(store, op.guest, batch))?;
        r.map_err(reported)
    }

    /// Calls `on-timer` for keyed operator `op.guest` with its due timers (a batch
    /// laid out as `timers.on-timer` says) and returns the raw output.
    pub fn on_timer(&mut self, op: OpRef, batch: &[u8]) -> Result<Vec<u8>, OperatorFailure> {
        let fuel = self.fuel_per_call;
        let r = self.guarded(fuel, Some(op.state), |e, store| match &e.timers {
            Some(t) => t.call_on_timer(store, op.guest, batch),
            None => Ok(Err(OperatorError::Failed("it set timers but does not export weir:dataflow/timers (on-timer)".into()))),
        })?;
        r.map_err(reported)
    }

    /// True if the component exports `on-timer`, so its keyed operators may set timers.
    pub fn has_timers(&self) -> bool {
        self.exports.timers.is_some()
    }

    /// What the guest's `clock` imports answer from now on.
    pub fn set_time(&mut self, time: Time) {
        self.store.data_mut().time = time;
    }

    /// Calls `close` for operator `op.guest`.
    pub fn close(&mut self, op: OpRef) -> Result<(), OperatorFailure> {
        let fuel = self.fuel_per_call;
        let r = self.guarded(fuel, Some(op.state), |e, store| e.operator.call_close(store, op.guest))?;
        r.map_err(reported)
    }

    /// Fuel every call of this instance burned so far (`plan`, `open`, `close` and
    /// calls that trapped included): the work to bill.
    pub fn fuel_burned(&self) -> u64 {
        self.fuel_burned
    }

    fn guarded<T>(
        &mut self,
        fuel: u64,
        op: Option<u32>,
        call: impl FnOnce(&Exports, &mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> Result<T, OperatorFailure> {
        if self.poisoned {
            return Err(OperatorFailure::Poisoned);
        }
        // Fuel is enabled on every engine this crate builds, so this cannot fail.
        let _ = self.store.set_fuel(fuel);
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
        self.store.data_mut().current_op = op;
        let result = call(&self.exports, &mut self.store);
        self.fuel_burned += fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        self.store.data_mut().current_op = None;
        result.map_err(|e| {
            self.poisoned = true;
            OperatorFailure::Trap(self.classify(&e, fuel))
        })
    }

    fn classify(&mut self, e: &wasmtime::Error, budget: u64) -> TrapKind {
        let host = self.store.data_mut();
        if let Some(requested) = host.limiter.hit.take() {
            return TrapKind::MemoryLimit { limit: host.limiter.limit, requested };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => return TrapKind::FuelExhausted { budget },
            Some(Trap::Interrupt) => return TrapKind::Deadline { timeout: self.call_timeout },
            _ => {}
        }
        if let Some(refused) = e.chain().find_map(|c| c.downcast_ref::<crate::grants::NotGranted>()) {
            return TrapKind::NotGranted(refused.to_string());
        }
        if let Some(msg) = host.last_error_log.take() {
            return TrapKind::Panic(msg.lines().collect::<Vec<_>>().join(" "));
        }
        TrapKind::Other(one_line(e))
    }
}

fn reported(e: OperatorError) -> OperatorFailure {
    OperatorFailure::Reported(match e {
        OperatorError::UnknownOperator(op) => format!("the component has no operator {op}"),
        OperatorError::BadInput(m) => format!("rejected its input: {m}"),
        OperatorError::Failed(m) => m,
    })
}
