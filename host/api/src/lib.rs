//! Weir's HTTP side: the JobManager's REST API (`/api/v1`, described by
//! `openapi.json`), its web dashboard (`/`), and Prometheus endpoints (`/metrics`) on
//! the JobManager and the TaskManagers.
//!
//! - [`router`]: the JobManager's routes. Every `/api/v1` route but the OpenAPI
//!   document needs `Authorization: Bearer <token>`: the token `weir cluster-init`
//!   writes (the admin: everything, tenant management) or a tenant's (its own jobs,
//!   artifacts and savepoints; anything else is "not found"). The dashboard page, its
//!   assets and `/metrics` are public (anonymous `/metrics` shows no tenant's jobs).
//! - `tenancy`: the admin's routes for tenants, their tokens and quotas.
//! - `convert`: the JobManager's answers as the JSON documents (`weir-documents`,
//!   shared with the `weir` CLI).
//! - [`metrics`]: Prometheus text for the JobManager and for a TaskManager.
//! - [`serve`](mod@serve): the HTTP server both run, with header and idle timeouts and a
//!   connection cap within the process's file-descriptor budget, stopped gracefully.
//! - [`tls`]: HTTPS for it (rustls); a TLS port refuses plain HTTP before any handler.
//!
//! It is not: the JobManager's logic. Handlers call [`weir_jobmanager::JobManager`]'s
//! operations and map [`ApiError`] to status codes; every failure answers with the
//! JSON error document, never a bare status.

mod convert;
mod deployments;
pub mod metrics;
pub mod serve;
mod tenancy;
pub mod tls;

pub use serve::{ServeLimits, bind, connection_budget, serve, serve_on};

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::de::DeserializeOwned;
use weir_documents::{
    ArtifactList, CheckpointList, Cluster, ErrorBody, ErrorDetail, EventList, Job, JobList, Metrics, SavepointDone, SavepointSpec, SubmitSpec,
    SwapDone, SwapSpec, TaskManagerList,
};
use weir_jobmanager::Caller;
use weir_jobmanager::JobManager;
use weir_jobmanager::api::{SwapTarget, check_savepoint_dir, job_id};
use weir_jobmanager::model::ApiError;
use weir_jobmanager::tenants::Refused;

/// The OpenAPI document of this API (kept in the repository, served as is).
pub const OPENAPI: &str = include_str!("../openapi.json");

const INDEX_HTML: &str = include_str!("../ui/index.html");

/// `(route, content type, body)` of `ui/FILE`, embedded.
macro_rules! ui_asset {
    ($file:literal, $kind:expr) => {
        (concat!("/ui/", $file), $kind, include_str!(concat!("../ui/", $file)))
    };
}
const JS: &str = "text/javascript; charset=utf-8";
/// The dashboard's style sheet and ES modules: `app.js` (loaded by the page) imports
/// the rest.
const UI_ASSETS: &[(&str, &str, &str)] = &[
    ui_asset!("style.css", "text/css; charset=utf-8"),
    ui_asset!("app.js", JS),
    ui_asset!("router.js", JS),
    ui_asset!("lib/api.js", JS),
    ui_asset!("lib/dom.js", JS),
    ui_asset!("lib/format.js", JS),
    ui_asset!("lib/poll.js", JS),
    ui_asset!("lib/state.js", JS),
    ui_asset!("lib/token.js", JS),
    ui_asset!("views/checkpoints.js", JS),
    ui_asset!("views/deployments.js", JS),
    ui_asset!("views/graph.js", JS),
    ui_asset!("views/job.js", JS),
    ui_asset!("views/jobs.js", JS),
    ui_asset!("views/overview.js", JS),
    ui_asset!("views/submit.js", JS),
    ui_asset!("views/taskmanagers.js", JS),
];

#[derive(Clone)]
pub(crate) struct Api {
    jm: JobManager,
    token: String,
}

/// The JobManager's HTTP routes: REST API, dashboard, metrics. `token` is the bearer
/// token API callers must present.
pub fn router(jm: JobManager, token: String) -> Router {
    // Leave room for the request framing around the largest accepted component.
    let body_limit = usize::try_from(jm.limits().max_component_bytes).unwrap_or(usize::MAX).saturating_add(64 * 1024);
    let state = Api { jm, token };
    let api = Router::new()
        .route("/cluster", get(cluster))
        .route("/taskmanagers", get(taskmanagers))
        .route("/artifacts", get(artifacts).post(upload))
        .route("/jobs", get(jobs).post(create_job))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/savepoints", post(savepoint))
        .route("/jobs/{id}/swap", post(swap))
        .route("/jobs/{id}/checkpoints", get(checkpoints))
        .route("/jobs/{id}/metrics", get(job_metrics))
        .route("/jobs/{id}/logs", get(logs))
        .route("/tenants", get(tenancy::tenants).post(tenancy::create))
        .route("/tenants/{name}", get(tenancy::tenant))
        .route("/tenants/{name}/quota", put(tenancy::quota))
        .route("/tenants/{name}/grants", put(tenancy::grants))
        .route("/tenants/{name}/hosts", put(tenancy::hosts))
        .route("/tenants/{name}/roots", put(tenancy::roots))
        .route("/tenants/{name}/tokens", get(tenancy::tokens).post(tenancy::issue))
        .route("/tokens/{id}/revoke", post(tenancy::revoke))
        .merge(deployments::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }));
    let ui: Router<Api> = UI_ASSETS
        .iter()
        .fold(Router::new(), |ui, &(path, kind, body)| ui.route(path, get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })));
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .merge(ui)
        .route("/metrics", get(jobmanager_metrics))
        .fallback(|| async { no_such_route().into_response() })
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route".into())
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A TaskManager's Prometheus endpoint (`/metrics`); everything else is 404.
pub fn taskmanager_router(tm: weir_taskmanager::TaskManager, slots: u32) -> Router {
    Router::new()
        .route("/metrics", get(move || async move { prometheus(metrics::taskmanager(&tm, slots)) }))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route (this is a taskmanager: try /metrics)".into()) })
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    // One line whatever the message quotes (paths, ids from the URL).
    let message = message.replace(|c: char| c.is_control(), " ");
    (status, axum::Json(ErrorBody { error: ErrorDetail { code: code.into(), message } })).into_response()
}

/// An [`ApiError`] as an HTTP response.
pub(crate) struct Failed(ApiError);

impl From<ApiError> for Failed {
    fn from(e: ApiError) -> Self {
        Failed(e)
    }
}

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let (status, code) = match &self.0 {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(e) => {
                tracing::error!("internal error answering an API request: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        error(status, code, self.0.to_string())
    }
}

pub(crate) type Answer<T> = Result<T, Failed>;

async fn authenticate(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    match caller(&api, request.headers()) {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing `Authorization: Bearer <token>` (the token is in api-token next to the cluster's ca.pem, or a tenant's from `weir tenant token create`)".into(),
        ),
        Err(why) => error(StatusCode::UNAUTHORIZED, "unauthorized", why.into()),
    }
}

/// Who presents the request's bearer token: the admin (the cluster's api token) or a
/// tenant; `None` without one. A token that is no one's, revoked or expired: why it
/// is refused (a 401).
fn caller(api: &Api, headers: &HeaderMap) -> Result<Option<Caller>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim).unwrap_or("");
    if same(token.as_bytes(), api.token.as_bytes()) {
        return Ok(Some(Caller::Admin));
    }
    let why = match api.jm.authenticate(token) {
        Ok(caller) => return Ok(Some(caller)),
        Err(Refused::Unknown) => "the bearer token is not this cluster's api token nor a tenant's",
        Err(Refused::Revoked) => "the bearer token was revoked",
        Err(Refused::Expired) => "the bearer token has expired",
    };
    Err(why)
}

/// What a route answers callers who may not know it exists: what an unknown route
/// answers.
pub(crate) fn no_such_route() -> Failed {
    Failed(ApiError::NotFound("no such route".into()))
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A request body, or the JSON error for one that could not be read (axum's own
/// rejections are plain text).
fn body(read: Result<Bytes, BytesRejection>) -> Result<Bytes, Failed> {
    read.map_err(|e| {
        let message = format!("cannot read the request body: {}", e.body_text());
        Failed(if e.status() == StatusCode::PAYLOAD_TOO_LARGE { ApiError::TooLarge(message) } else { ApiError::BadRequest(message) })
    })
}

/// A JSON body, with a clear error instead of axum's plain-text rejection.
pub(crate) fn parse<T: DeserializeOwned>(read: Result<Bytes, BytesRejection>, what: &str) -> Result<T, Failed> {
    let bytes = body(read)?;
    serde_json::from_slice(&bytes).map_err(|e| Failed(ApiError::BadRequest(format!("invalid {what}: {e}"))))
}

pub(crate) fn json<T: serde::Serialize>(status: StatusCode, value: T) -> Response {
    (status, axum::Json(value)).into_response()
}

// Every handler serves its caller's view: a tenant's request about what it does not
// own is answered as one about what does not exist.

async fn cluster(State(api): State<Api>, Extension(caller): Extension<Caller>) -> axum::Json<Cluster> {
    axum::Json(convert::cluster(&api.jm.overview_where(|owner| caller.sees(owner))))
}

async fn taskmanagers(State(api): State<Api>) -> axum::Json<TaskManagerList> {
    axum::Json(convert::taskmanagers(&api.jm.overview()))
}

async fn artifacts(State(api): State<Api>, Extension(caller): Extension<Caller>) -> axum::Json<ArtifactList> {
    axum::Json(ArtifactList { artifacts: api.jm.artifacts_for(&caller).into_iter().map(convert::artifact).collect() })
}

async fn upload(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Answer<Response> {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/octet-stream");
    if !(kind.starts_with("application/wasm") || kind.starts_with("application/octet-stream")) {
        return Ok(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("send the .wasm bytes as application/wasm or application/octet-stream, not {kind}"),
        ));
    }
    let artifact = api.jm.upload_as(&caller, body(read)?.to_vec()).await?;
    Ok(json(StatusCode::CREATED, convert::artifact(artifact)))
}

async fn jobs(State(api): State<Api>, Extension(caller): Extension<Caller>, RawQuery(query): RawQuery) -> Answer<axum::Json<JobList>> {
    let mut state = None;
    for pair in query.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("state", s)) => state = Some(s.to_ascii_uppercase()),
            _ => return Err(Failed(ApiError::BadRequest(format!("unknown query parameter {pair:?} (only state=STATE)")))),
        }
    }
    const STATES: [&str; 6] = ["STARTING", "STARTED", "TERMINATING", "TERMINATED", "FAILED", "FINISHED"];
    if let Some(s) = &state
        && !STATES.contains(&s.as_str())
    {
        return Err(Failed(ApiError::BadRequest(format!("state must be one of {}, got {s:?}", STATES.join(", ")))));
    }
    let jobs =
        api.jm.jobs_for(&caller).into_iter().filter(|j| state.as_deref().is_none_or(|s| j.resource.state.name() == s)).map(convert::job).collect();
    Ok(axum::Json(JobList { jobs }))
}

async fn create_job(State(api): State<Api>, Extension(caller): Extension<Caller>, read: Result<Bytes, BytesRejection>) -> Answer<Response> {
    let spec: SubmitSpec = parse(read, "job spec")?;
    let job = api.jm.create_job_as(&caller, spec).await?;
    Ok(json(StatusCode::CREATED, convert::job(job)))
}

// A malformed job id in a path is refused as an unknown job (`api::job_id`).

/// The job named in a path, if `caller` may see it (else the unknown job's answer).
fn visible(api: &Api, caller: &Caller, id: &str) -> Result<weir_types::ids::JobId, Failed> {
    let id = job_id(id)?;
    api.jm.check_job(caller, &id)?;
    Ok(id)
}

async fn job(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<axum::Json<Job>> {
    Ok(axum::Json(convert::job(api.jm.job(&visible(&api, &caller, &id)?)?)))
}

async fn cancel(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<Response> {
    Ok(json(StatusCode::ACCEPTED, convert::job(api.jm.cancel(&visible(&api, &caller, &id)?)?)))
}

async fn savepoint(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    read: Result<Bytes, BytesRejection>,
) -> Answer<axum::Json<SavepointDone>> {
    let spec: SavepointSpec = parse(read, "savepoint request")?;
    check_savepoint_dir(&spec.dir)?;
    let checkpoint = api.jm.savepoint_as(&caller, &job_id(&id)?, &spec.dir, spec.stop).await?;
    Ok(axum::Json(SavepointDone { checkpoint, dir: spec.dir }))
}

async fn swap(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    read: Result<Bytes, BytesRejection>,
) -> Answer<axum::Json<SwapDone>> {
    // Another tenant's job is unknown whatever the body says.
    let id = visible(&api, &caller, &id)?;
    let spec: SwapSpec = parse(read, "swap request")?;
    let to = match (spec.artifact, spec.components) {
        (Some(artifact), components) if components.is_empty() => SwapTarget::Artifact(artifact),
        (None, components) if !components.is_empty() => SwapTarget::Components(components),
        _ => return Err(ApiError::BadRequest("give either an artifact (a job component) or components (of a manifest job)".into()).into()),
    };
    let checkpoint = api.jm.swap_as(&caller, &id, &to).await?;
    Ok(axum::Json(match to {
        SwapTarget::Artifact(artifact) => SwapDone { checkpoint, artifact: Some(artifact), components: Default::default() },
        SwapTarget::Components(components) => SwapDone { checkpoint, artifact: None, components },
    }))
}

async fn checkpoints(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<axum::Json<CheckpointList>> {
    let (list, last_completed) = api.jm.checkpoints(&visible(&api, &caller, &id)?)?;
    Ok(axum::Json(CheckpointList { checkpoints: list.into_iter().map(convert::checkpoint).collect(), last_completed }))
}

async fn job_metrics(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<axum::Json<Metrics>> {
    let id = visible(&api, &caller, &id)?;
    let m = api.jm.metrics(&id)?;
    Ok(axum::Json(convert::metrics(&id, m)))
}

async fn logs(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<axum::Json<EventList>> {
    Ok(axum::Json(EventList { events: api.jm.events(&visible(&api, &caller, &id)?)?.into_iter().map(convert::event).collect() }))
}

/// Public for the operator's scraper, which sees the cluster and the jobs of no
/// tenant; with a token, the admin sees every job's series and a tenant its own.
async fn jobmanager_metrics(State(api): State<Api>, headers: HeaderMap) -> Response {
    match caller(&api, &headers) {
        Ok(Some(caller)) => prometheus(metrics::jobmanager(&api.jm, &|owner| caller.sees(owner))),
        Ok(None) => prometheus(metrics::jobmanager(&api.jm, &|owner| owner.is_none())),
        Err(why) => error(StatusCode::UNAUTHORIZED, "unauthorized", why.into()),
    }
}

fn prometheus(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
