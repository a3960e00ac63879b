//! The engine, the linker and the compiled-component cache.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{JobComponent as JobWorld, job_exports, operator_exports, timers_exports};
use crate::error::LoadError;
use crate::instance::HostState;

/// The version of the `weir:dataflow` WIT package this host implements.
pub const WIT_VERSION: &str = "0.2.0";

/// How often the ticker thread advances the engine's epoch: the resolution of
/// `Limits::call_timeout`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource limits of the sandbox.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest component file accepted, checked before compiling.
    pub max_component_bytes: u64,
    /// Largest linear memory of one instance.
    pub max_memory_bytes: usize,
    /// Fuel (roughly: Wasm instructions) one operator call may use.
    pub fuel_per_call: u64,
    /// Fuel for the `plan` call at submission, which should be cheap.
    pub plan_fuel: u64,
    /// Wall-clock time one call (and instantiation) may take before it traps, even
    /// when it spends that time in host calls: fuel counts instructions, this counts
    /// time. Rounded up to the epoch tick ([`EPOCH_TICK`]). Zero turns the guard off
    /// (no epoch checks compiled in, no ticker thread).
    pub call_timeout: Duration,
    /// Instances the pooling allocator keeps slots for (all jobs of the process).
    pub max_instances: u32,
    /// Bytes of compiled components (`.cwasm`) kept in the cache directory; past it the
    /// least recently used files are deleted.
    pub max_cache_bytes: u64,
    /// Bytes of compiled code kept loaded in memory for later loads; past it the least
    /// recently used are dropped (subtasks running one keep it until they end).
    pub max_compiled_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_component_bytes: 64 << 20,
            max_memory_bytes: 256 << 20,
            fuel_per_call: 2_000_000_000,
            plan_fuel: 200_000_000,
            call_timeout: Duration::from_secs(10),
            max_instances: 256,
            max_cache_bytes: 2 << 30,
            max_compiled_bytes: 512 << 20,
        }
    }
}

/// One Wasm engine per process, shared by every job and subtask.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    engine_tag: u64,
    compiled: Mutex<Compiled>,
}

/// Compiled components loaded in this process, by hash, least recently used dropped
/// first past `Limits::max_compiled_bytes`.
#[derive(Default)]
struct Compiled {
    map: HashMap<String, (JobComponent, u64)>,
    bytes: u64,
    clock: u64,
}

impl Compiled {
    fn get(&mut self, hash: &str) -> Option<JobComponent> {
        self.clock += 1;
        let (c, used) = self.map.get_mut(hash)?;
        *used = self.clock;
        Some(c.clone())
    }

    fn insert(&mut self, hash: String, c: JobComponent, cap: u64) {
        self.clock += 1;
        if let Some((old, _)) = self.map.insert(hash.clone(), (c.clone(), self.clock)) {
            self.bytes -= old.code_bytes;
        }
        self.bytes += c.code_bytes;
        while self.bytes > cap {
            let oldest = self.map.iter().filter(|(h, _)| **h != hash).min_by_key(|(_, (_, used))| *used).map(|(h, _)| h.clone());
            let Some(old) = oldest.and_then(|h| self.map.remove(&h)) else { break };
            self.bytes -= old.0.code_bytes;
            tracing::debug!(hash = %old.0.hash, "dropped a compiled component from memory (over the cap)");
        }
    }
}

/// The WIT world a caller needs a component to implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `job-component`: a plan and its operators (a job submitted as one `.wasm`).
    Job,
    /// `operator-component`: operators only, named by a job manifest. Job components
    /// qualify too, since they export the operators as well.
    Operator,
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::Job => "job-component",
            World::Operator => "operator-component",
        }
    }
}

/// A compiled component known to implement at least the `operator-component` world.
#[derive(Clone)]
pub struct JobComponent {
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) operator: operator_exports::GuestIndices,
    /// Set when the component also exports `job` (its plan).
    pub(crate) job: Option<job_exports::GuestIndices>,
    /// Set when the component exports `timers` (its keyed operators set timers).
    pub(crate) timers: Option<timers_exports::GuestIndices>,
    /// Hex SHA-256 of the component bytes.
    pub hash: String,
    /// Size of the component file.
    pub size: u64,
    /// Size of its compiled code in memory.
    code_bytes: u64,
}

impl JobComponent {
    /// True if the component exports a plan (`job-component`), false if it only holds
    /// operators. Instances of plan-exporting components run `plan` before `open`,
    /// since guest SDKs rebuild their operators there.
    pub fn has_plan(&self) -> bool {
        self.job.is_some()
    }

    /// True if the component exports `on-timer`, so its keyed operators may set timers.
    pub fn has_timers(&self) -> bool {
        self.timers.is_some()
    }

    fn implements(&self, world: World) -> Result<(), LoadError> {
        match (world, self.has_plan()) {
            (World::Job, false) => Err(LoadError::WrongWorld {
                world: world.name(),
                expected: WIT_VERSION,
                detail: format!("it does not export weir:dataflow/job@{WIT_VERSION} (an operator-only component runs from a job manifest)"),
            }),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for JobComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobComponent").field("hash", &self.hash).field("size", &self.size).finish()
    }
}

impl Runtime {
    /// Creates the engine. `cache_dir` keeps compiled components across restarts.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, LoadError> {
        let sandbox = |e: wasmtime::Error| LoadError::Sandbox(format!("{e:#}"));
        let mut pool = PoolingAllocationConfig::new();
        // A component instance holds several core instances (the guest plus its WASI
        // adapter and shims), each with a memory or table; leave room for them.
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * 8)
            .total_memories(limits.max_instances * 2)
            .total_tables(limits.max_instances * 8)
            .total_stacks(limits.max_instances)
            .max_memory_size(limits.max_memory_bytes);
        let mut config = Config::new();
        let guarded = !limits.call_timeout.is_zero();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(guarded)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(sandbox)?;
        if guarded {
            spawn_epoch_ticker(&engine).map_err(|e| LoadError::Sandbox(format!("cannot start the epoch ticker: {e}")))?;
        }
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(sandbox)?;
        crate::grants::gate_clocks(&mut linker).map_err(sandbox)?;
        JobWorld::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(&mut linker, |s| s).map_err(sandbox)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_tag = h.finish();
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| LoadError::Cache { path: dir.display().to_string(), source })?;
        }
        Ok(Self { inner: Arc::new(RuntimeInner { engine, linker, limits, cache_dir, engine_tag, compiled: Mutex::default() }) })
    }

    /// The limits every instance runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Epoch ticks a call may run: its timeout rounded up to whole ticks (at least one
    /// more than the tick it starts in, so a call never traps at once); None when the
    /// guard is off.
    pub(crate) fn call_deadline_ticks(&self) -> Option<u64> {
        if self.inner.limits.call_timeout.is_zero() {
            return None;
        }
        let tick = EPOCH_TICK.as_nanos().max(1);
        Some((self.inner.limits.call_timeout.as_nanos().div_ceil(tick) as u64).saturating_add(1))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    fn check_size(&self, size: u64) -> Result<(), LoadError> {
        check_size(size, self.inner.limits.max_component_bytes)
    }

    /// Checks and compiles a component that must implement `world`, or takes it from
    /// the cache.
    pub fn load(&self, bytes: &[u8], world: World) -> Result<JobComponent, LoadError> {
        self.check_size(bytes.len() as u64)?;
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            Some([0, b'a', b's', b'm', ..]) => return Err(LoadError::Invalid("unknown Wasm binary version or layer".into())),
            _ => return Err(LoadError::NotWasm),
        }
        let hash = hex::encode(Sha256::digest(bytes));
        let cached = self.lock_compiled().get(&hash);
        let loaded = match cached {
            Some(c) => c,
            None => {
                let component = self.compile_cached(bytes, &hash)?;
                self.admit(component, hash, bytes.len() as u64, world)?
            }
        };
        loaded.implements(world)?;
        Ok(loaded)
    }

    /// A component known by its hash, if this process loaded it before or the disk
    /// cache holds it compiled: a TaskManager then needs no copy of the bytes.
    pub fn cached(&self, hash: &str) -> Option<JobComponent> {
        if let Some(c) = self.lock_compiled().get(hash) {
            return Some(c);
        }
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let path = self.cache_path(hash)?;
        let component = self.deserialize_cached(&path, hash)?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        self.admit(component, hash.to_string(), size, World::Operator).ok()
    }

    fn cache_path(&self, hash: &str) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        Some(dir.join(format!("{hash}-{:016x}.cwasm", self.inner.engine_tag)))
    }

    fn deserialize_cached(&self, path: &Path, hash: &str) -> Option<Component> {
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `serialize` in `compile_cached` from this
        // engine configuration (the name carries the engine's compatibility hash) into
        // a directory owned by this host; wasmtime still checks its header.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(&self.inner.engine, path) } {
            Ok(c) => {
                tracing::info!(hash, "loaded the compiled component from the cache");
                // Marks it used, for the cache's eviction order.
                if let Ok(f) = std::fs::File::options().write(true).open(path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "discarding unusable compiled component: {e:#}");
                None
            }
        }
    }

    /// Checks a compiled component's world and remembers it.
    fn admit(&self, component: Component, hash: String, size: u64, world: World) -> Result<JobComponent, LoadError> {
        let wrong = |detail: String| LoadError::WrongWorld { world: world.name(), expected: WIT_VERSION, detail };
        let optional = check_world(&self.inner.engine, &component).map_err(|Mismatch(m)| wrong(m))?;
        let wrong = |e: wasmtime::Error| wrong(one_line(&e));
        let pre = self.inner.linker.instantiate_pre(&component).map_err(wrong)?;
        let operator = operator_exports::GuestIndices::new(&pre).map_err(wrong)?;
        let job = if optional.job { Some(job_exports::GuestIndices::new(&pre).map_err(wrong)?) } else { None };
        let timers = if optional.timers { Some(timers_exports::GuestIndices::new(&pre).map_err(wrong)?) } else { None };
        let code = component.image_range();
        let code_bytes = (code.end as usize).saturating_sub(code.start as usize) as u64;
        let job = JobComponent { pre, operator, job, timers, hash: hash.clone(), size, code_bytes };
        self.lock_compiled().insert(hash, job.clone(), self.inner.limits.max_compiled_bytes);
        Ok(job)
    }

    fn lock_compiled(&self) -> std::sync::MutexGuard<'_, Compiled> {
        // The map only caches; a panic elsewhere cannot leave it inconsistent.
        self.inner.compiled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn compile_cached(&self, bytes: &[u8], hash: &str) -> Result<Component, LoadError> {
        let engine = &self.inner.engine;
        let Some(dir) = &self.inner.cache_dir else {
            return Component::from_binary(engine, bytes).map_err(|e| LoadError::Invalid(one_line(&e)));
        };
        let path = dir.join(format!("{hash}-{:016x}.cwasm", self.inner.engine_tag));
        if let Some(c) = self.deserialize_cached(&path, hash) {
            return Ok(c);
        }
        let started = std::time::Instant::now();
        let component = Component::from_binary(engine, bytes).map_err(|e| LoadError::Invalid(one_line(&e)))?;
        tracing::info!(hash, ms = started.elapsed().as_millis() as u64, "compiled the component");
        let serialized = component.serialize().map_err(|e| LoadError::Sandbox(one_line(&e)))?;
        let io = |source| LoadError::Cache { path: path.display().to_string(), source };
        // Write then rename, so a crash never leaves a half-written file under the
        // final name.
        // Unique per compilation: two subtasks of one process may compile the same
        // component at once, and one's rename must not take the other's file away.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{hash}.{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, &serialized).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        evict_cache(dir, &path, self.inner.limits.max_cache_bytes);
        Ok(component)
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on one thread per engine, until
/// the engine is dropped (it holds only a weak reference). A call past its deadline
/// traps at the next epoch check in Wasm (function entries and loop heads); a host
/// call is not interrupted, but the guest traps as soon as it returns into Wasm.
fn spawn_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new().name("weir-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            let Some(engine) = weak.upgrade() else { return };
            engine.increment_epoch();
        }
    })?;
    Ok(())
}

/// Deletes the least recently used (oldest modified: loads touch them) compiled
/// components in `dir` until they fit in `cap` bytes, never `keep`. Processes sharing
/// the directory may delete each other's files: one that had it loaded keeps it in
/// memory, and one that looks for it later compiles it again.
fn evict_cache(dir: &Path, keep: &Path, cap: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| e.metadata().ok().map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), e.path())))
        .collect();
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= cap {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                tracing::info!(path = %path.display(), "evicted a compiled component from the cache (over its cap)");
            }
            Err(e) => tracing::warn!(path = %path.display(), "cannot evict a compiled component: {e}"),
        }
    }
}

fn check_size(size: u64, limit: u64) -> Result<(), LoadError> {
    if size > limit {
        return Err(LoadError::TooLarge { size, limit });
    }
    Ok(())
}

/// Reads a component file, refusing one over `limit` bytes before reading it.
pub fn read_component(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    let io = |source| LoadError::Read { path: path.display().to_string(), source };
    check_size(std::fs::metadata(path).map_err(io)?.len(), limit)?;
    std::fs::read(path).map_err(io)
}

/// Which optional interfaces a component exports.
struct Optional {
    /// `job`: the plan.
    job: bool,
    /// `timers`: `on-timer`.
    timers: bool,
}

/// Names the first export or import that does not match this host's world, with the
/// version the component was built for when it is another version of our package.
fn check_world(engine: &Engine, component: &Component) -> Result<Optional, Mismatch> {
    let ty = component.component_type();
    let wrong = |detail: String| Mismatch(detail);
    for iface in ["operator", "job", "timers"] {
        let want = format!("weir:dataflow/{iface}@{WIT_VERSION}");
        if ty.get_export(engine, &want).is_some() {
            continue;
        }
        let other = ty.exports(engine).map(|(name, _)| name.to_string()).find(|name| name.starts_with(&format!("weir:dataflow/{iface}@")));
        match (iface, other) {
            // No plan at all: an operator-only component; no timers: none set.
            ("job" | "timers", None) => {}
            (_, Some(name)) => return Err(wrong(format!("it exports {name}, built against another version of the Weir WIT"))),
            (_, None) => return Err(wrong(format!("it does not export {want}"))),
        }
    }
    for (name, item) in ty.imports(engine) {
        let is_instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
        if is_instance && name.starts_with("weir:dataflow/") && !name.ends_with(&format!("@{WIT_VERSION}")) {
            return Err(wrong(format!("it imports {name}, built against another version of the Weir WIT")));
        }
    }
    let exports = |iface: &str| ty.get_export(engine, &format!("weir:dataflow/{iface}@{WIT_VERSION}")).is_some();
    Ok(Optional { job: exports("job"), timers: exports("timers") })
}

/// What `check_world` found wrong; the caller names the world it wanted.
struct Mismatch(String);

/// A wasmtime error as one line: the outermost message and its root cause.
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    let first = e.to_string();
    let root = e.root_cause().to_string();
    let s = if root == first || first.contains(&root) { first } else { format!("{first}: {root}") };
    s.lines().next().unwrap_or_default().to_string()
}
