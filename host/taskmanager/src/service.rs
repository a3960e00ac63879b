//! The `weir taskmanager` process's side of the control plane: registers its slots,
//! heartbeats with the progress of its subtasks, and carries out the JobManager's
//! deploy / start / cancel orders. A component is fetched only when neither memory
//! nor the compiled-component cache has it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use weir_control::client::{self, ControlError};
use weir_control::protocol::{FromJobManager, Hello, ToJobManager};
use weir_types::deployment::{JobDeployment, TaskEnd, TaskOutcome};
use weir_types::ids::{ComponentHash, RunId};
use weir_wasm::{JobComponent, World};

use crate::dataplane::DataPlane;
use crate::task::SwapTo;
use crate::worker::{PreparedJob, Report, Reporter, TaskManager};

/// Messages to the JobManager waiting to be written; task ends and heartbeats are
/// small and few, so this bounds memory without ever blocking a subtask for long.
const OUTBOX: usize = 1024;

/// Why the TaskManager stopped serving.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// The JobManager could not be reached or refused the registration.
    #[error("cannot register: {0}")]
    Register(ControlError),
    /// The connection to the JobManager failed after registering.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The data plane has no address.
    #[error("data plane address: {0}")]
    Address(std::io::Error),
}

/// Registers with the JobManager at `jm` and serves it until the connection ends.
/// The data plane must already be serving ([`DataPlane::serve`]). Peers dial
/// `advertise`, by default the data plane's own address.
pub async fn serve(tm: TaskManager, data: DataPlane, jm: SocketAddr, slots: u32, advertise: Option<SocketAddr>) -> Result<(), ServiceError> {
    let data_addr = match advertise {
        Some(a) => a,
        None => data.local_addr().map_err(ServiceError::Address)?,
    }
    .to_string();
    let mut session = client::open(data.endpoint(), jm, Hello::TaskManager { slots, data_addr }).await.map_err(ServiceError::Register)?;
    let (id, interval) = match session.next().await.map_err(ServiceError::Register)? {
        FromJobManager::Registered { id, heartbeat_ms } => (id, Duration::from_millis(heartbeat_ms.max(10))),
        other => return Err(ServiceError::Register(ControlError::Protocol(format!("expected registration, got {other:?}")))),
    };
    tracing::info!(%id, slots, "registered with the jobmanager");

    let (out_tx, mut out_rx) = mpsc::channel::<ToJobManager>(OUTBOX);
    let mut tx = session.tx;
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if let Err(e) = tx.send(&m).await {
                return ControlError::from(e);
            }
        }
        ControlError::Protocol("outbox closed".into())
    });
    let heartbeats = {
        let (tm, out) = (tm.clone(), out_tx.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if out.send(ToJobManager::Heartbeat(tm.progress())).await.is_err() {
                    return;
                }
            }
        })
    };

    let mut rx = session.rx;
    // Deployments waiting for components, by run: (deployment, which TaskManager we
    // are, hashes still missing).
    let mut waiting: HashMap<RunId, (Box<JobDeployment>, u32, Vec<ComponentHash>)> = HashMap::new();
    let mut prepared: HashMap<RunId, PreparedJob> = HashMap::new();
    // Live swaps waiting for components, by run: (the new components, the switch
    // point, hashes still missing).
    let mut swaps: HashMap<RunId, (Vec<ComponentHash>, u64, Vec<ComponentHash>)> = HashMap::new();
    // Components compile off this loop (Python's take seconds), so control messages of
    // other jobs are not held up; each reports back here when done.
    let (loaded_tx, mut loaded_rx) = mpsc::unbounded_channel::<Loaded>();
    let result = loop {
        // Both receivers keep their state across a lost race: `recv` only awaits
        // quinn's cancel-safe `read_chunk`.
        let received = tokio::select! {
            r = rx.recv() => r,
            Some(loaded) = loaded_rx.recv() => {
                let Loaded { run, hash, error } = loaded;
                if let Some((components, at, missing)) = swaps.get_mut(&run) {
                    missing.retain(|h| *h != hash);
                    let reply = match error {
                        Some(error) => Some(ToJobManager::SwapReady { run: run.clone(), result: Err(error) }),
                        None if missing.is_empty() => Some(arm(&tm, &run, components, *at)),
                        None => None,
                    };
                    if let Some(reply) = reply {
                        swaps.remove(&run);
                        let _ = out_tx.send(reply).await;
                    }
                    continue;
                }
                let Some((_, _, missing)) = waiting.get_mut(&run) else { continue };
                missing.retain(|h| *h != hash);
                if let Some(error) = error {
                    waiting.remove(&run);
                    let _ = out_tx.send(ToJobManager::PrepareFailed { run, error }).await;
                } else if missing.is_empty()
                    && let Some((deployment, me, _)) = waiting.remove(&run)
                {
                    let p = prepare(&tm, &deployment, me, &out_tx).await;
                    prepared.extend(p.map(|p| (run, p)));
                }
                continue;
            }
        };
        let msg = match received {
            Ok(Some(m)) => m,
            Ok(None) => break Err(ControlError::Protocol("the jobmanager closed the control stream".into())),
            Err(e) => break Err(e.into()),
        };
        match msg {
            FromJobManager::Deploy { deployment, me } => {
                let run = deployment.run_id();
                let missing: Vec<ComponentHash> =
                    deployment.code.components.iter().filter(|h| tm.runtime().cached(h.as_str()).is_none()).cloned().collect();
                if missing.is_empty() {
                    let p = prepare(&tm, &deployment, me, &out_tx).await;
                    prepared.extend(p.map(|p| (run, p)));
                } else {
                    waiting.insert(run.clone(), (deployment, me, missing.clone()));
                    // The writer ending ends this loop too, at the next message.
                    let _ = out_tx.send(ToJobManager::NeedComponents { run, hashes: missing }).await;
                }
            }
            FromJobManager::Component { run, hash, size } => {
                let limit = tm.runtime().limits().max_component_bytes;
                if size > limit {
                    break Err(ControlError::Protocol(format!("component of {size} bytes exceeds the limit of {limit}")));
                }
                let bytes = match client::recv_chunks(&mut rx, size, |m| match m {
                    FromJobManager::ComponentChunk(c) => Some(c),
                    _ => None,
                })
                .await
                {
                    Ok(b) => b,
                    Err(e) => break Err(e),
                };
                let wanted = |missing: &Vec<ComponentHash>| missing.contains(&hash);
                if !waiting.get(&run).is_some_and(|(_, _, m)| wanted(m)) && !swaps.get(&run).is_some_and(|(_, _, m)| wanted(m)) {
                    continue;
                }
                tracing::info!(job = %run, %hash, bytes = bytes.len(), "received a component of the job");
                let (runtime, loaded_tx) = (tm.runtime().clone(), loaded_tx.clone());
                tokio::spawn(async move {
                    let want = hash.clone();
                    let loaded = tokio::task::spawn_blocking(move || runtime.load(&bytes, World::Operator)).await;
                    let error = match loaded {
                        Ok(Ok(component)) if want == component.hash.as_str() => None,
                        Ok(Ok(component)) => Some(format!("received component {} but the job names {want}", component.hash)),
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(format!("loading panicked: {e}")),
                    };
                    let _ = loaded_tx.send(Loaded { run, hash, error });
                });
            }
            FromJobManager::Start { run } => {
                if let Some(p) = prepared.remove(&run) {
                    let started = p.start();
                    if let Err(e) = started {
                        tracing::error!(job = %run, "could not start the job: {e}");
                    }
                }
            }
            FromJobManager::TriggerCheckpoint { run, id, stop } => tm.trigger_checkpoint(&run, id, stop),
            FromJobManager::CheckpointComplete { run, id } => tm.checkpoint_completed(&run, id),
            FromJobManager::Swap { run, components, at } => {
                let missing: Vec<ComponentHash> = components.iter().filter(|h| tm.runtime().cached(h.as_str()).is_none()).cloned().collect();
                if missing.is_empty() {
                    let _ = out_tx.send(arm(&tm, &run, &components, at)).await;
                } else {
                    swaps.insert(run.clone(), (components, at, missing.clone()));
                    let _ = out_tx.send(ToJobManager::NeedComponents { run, hashes: missing }).await;
                }
            }
            FromJobManager::SwapAbort { run } => {
                swaps.remove(&run);
                tm.disarm_swap(&run);
            }
            FromJobManager::Cancel { run } => {
                waiting.remove(&run);
                swaps.remove(&run);
                match prepared.remove(&run) {
                    Some(p) => cancel_prepared(&tm, p, &out_tx).await,
                    None => tm.cancel(&run),
                }
            }
            FromJobManager::FuelRates(rates) => tm.throttles().set(
                rates.into_iter().map(|r| crate::throttle::Share { tenant: r.tenant, fuel_per_second: r.fuel_per_second, jobs: r.jobs }).collect(),
            ),
            other => break Err(ControlError::Protocol(format!("unexpected message from the jobmanager: {other:?}"))),
        }
        if writer.is_finished() {
            break Err(ControlError::Protocol("lost the control stream to the jobmanager".into()));
        }
    };
    heartbeats.abort();
    writer.abort();
    // Without a JobManager nobody would hear of these subtasks' ends; stop them.
    for (run, p) in prepared {
        tm.discard(&run);
        drop(p);
    }
    for run in tm.running_jobs() {
        tm.cancel(&run);
    }
    result.map_err(Into::into)
}

/// Registers with the JobManager at `jm` and serves it for as long as the process
/// lives: once registered, a TaskManager outlives its JobManager. When the connection
/// ends, [`serve`] has already cancelled what ran for it (nobody would hear of those
/// subtasks' ends), and it registers again with the JobManager that comes back, as
/// Flink's TaskManagers do. Returns only when the first registration fails, with
/// why: a TaskManager that never reached its JobManager is misconfigured, and
/// retrying would hide that from whoever started it.
pub async fn serve_forever(
    tm: TaskManager,
    data: DataPlane,
    jm: SocketAddr,
    slots: u32,
    advertise: Option<SocketAddr>,
) -> Result<std::convert::Infallible, ControlError> {
    // The least time between two registrations, so that a JobManager refusing or
    // dropping every connection at once is not dialled in a busy loop.
    const BACKOFF: Duration = Duration::from_millis(500);
    let mut registered = false;
    loop {
        let started = std::time::Instant::now();
        match serve(tm.clone(), data.clone(), jm, slots, advertise).await {
            Err(ServiceError::Register(e)) if !registered => return Err(e),
            // The JobManager is not back yet: keep trying.
            Err(ServiceError::Register(_)) => {}
            Err(e) => {
                registered = true;
                tracing::warn!("lost the jobmanager at {jm}: {e}; registering again");
            }
            Ok(()) => registered = true,
        }
        if started.elapsed() < BACKOFF {
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// A received component, loaded (compiled or from the cache) or refused.
struct Loaded {
    run: RunId,
    hash: ComponentHash,
    error: Option<String>,
}

/// Arms a live swap of `run` to `components` (all compiled here) at checkpoint `at`;
/// the answer for the JobManager.
fn arm(tm: &TaskManager, run: &RunId, components: &[ComponentHash], at: u64) -> ToJobManager {
    let loaded: Option<Vec<JobComponent>> = components.iter().map(|h| tm.runtime().cached(h.as_str())).collect();
    let result = match loaded {
        None => Err("a component of the swap vanished from the cache".to_string()),
        Some(components) => match tm.arm_swap(run, SwapTo { at, components }) {
            true => Ok(()),
            false => Err(format!("run {run} is not running on this taskmanager")),
        },
    };
    ToJobManager::SwapReady { run: run.clone(), result }
}

/// Prepares this TaskManager's share of `d`, whose components are all loaded here.
async fn prepare(tm: &TaskManager, d: &JobDeployment, me: u32, out: &mpsc::Sender<ToJobManager>) -> Option<PreparedJob> {
    let run = d.run_id();
    let components: Option<Vec<JobComponent>> = d.code.components.iter().map(|h| tm.runtime().cached(h.as_str())).collect();
    let Some(components) = components else {
        let error = "a component of the job vanished from the cache".to_string();
        let _ = out.send(ToJobManager::PrepareFailed { run, error }).await;
        return None;
    };
    let (tm2, d2) = (tm.clone(), d.clone());
    // Subtask and snapshot threads are not on the runtime, so they may block on the outbox.
    let out2 = out.clone();
    let report: Reporter = Arc::new(move |r| {
        let _ = out2.blocking_send(match r {
            Report::Ended(end) => ToJobManager::TaskEnded(end),
            Report::Snapshot(ack) => ToJobManager::CheckpointAck(ack),
            Report::EndOfInput(end) => ToJobManager::EndOfInput(end),
        });
    });
    // Opening state and files blocks; keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || tm2.prepare(&d2, me, &components, report)).await;
    let (reply, prepared) = match result {
        Ok(Ok(p)) => (ToJobManager::Prepared { run: run.clone() }, Some(p)),
        Ok(Err(e)) => (ToJobManager::PrepareFailed { run: run.clone(), error: e.to_string() }, None),
        Err(e) => (ToJobManager::PrepareFailed { run: run.clone(), error: format!("preparing panicked: {e}") }, None),
    };
    if prepared.is_none() {
        tm.discard(&run);
    }
    let _ = out.send(reply).await;
    prepared
}

/// A job cancelled before it started: its subtasks never run, and each reports so.
async fn cancel_prepared(tm: &TaskManager, p: PreparedJob, out: &mpsc::Sender<ToJobManager>) {
    let run = p.run().clone();
    let ends: Vec<TaskEnd> =
        p.subtasks().map(|(vertex, subtask)| TaskEnd { run: run.clone(), vertex, subtask, outcome: TaskOutcome::Cancelled }).collect();
    drop(p);
    tm.discard(&run);
    for end in ends {
        let _ = out.send(ToJobManager::TaskEnded(end)).await;
    }
}
