//! The Deployment routes (issue 17): `/api/v1/deployments` lists and applies (creates
//! or updates, by the spec's name), `/deployments/{name}` gets and deletes,
//! `/deployments/{name}/suspend` and `/resume` change the desired state. The
//! JobManager's controller does the rest; these only map JSON and errors.
//!
//! Deployments are the admin's: a tenant's token gets what an unknown route answers
//! (per-tenant Deployments, owned like jobs, are not built yet).

use axum::Json;
use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use weir_documents::{Deployment, DeploymentList, DeploymentSpec, DesiredState};
use weir_jobmanager::Caller;

use crate::{Answer, Api, json, no_such_route, parse};

/// The routes, to nest under `/api/v1` (behind its authentication).
pub(crate) fn routes() -> axum::Router<Api> {
    axum::Router::new()
        .route("/deployments", get(list).post(apply))
        .route("/deployments/{name}", get(one).delete(delete))
        .route("/deployments/{name}/suspend", post(suspend))
        .route("/deployments/{name}/resume", post(resume))
        .route_layer(middleware::from_fn(admin_only))
}

async fn admin_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(Caller::Admin) => next.run(request).await,
        _ => no_such_route().into_response(),
    }
}

async fn list(State(api): State<Api>) -> Json<DeploymentList> {
    Json(DeploymentList { deployments: api.jm.deployments() })
}

async fn apply(State(api): State<Api>, read: Result<Bytes, BytesRejection>) -> Answer<Response> {
    let spec: DeploymentSpec = parse(read, "deployment spec")?;
    let created = api.jm.deployment(&spec.name).is_err();
    let d = api.jm.apply_deployment(spec).await?;
    Ok(json(if created { StatusCode::CREATED } else { StatusCode::OK }, d))
}

async fn one(State(api): State<Api>, Path(name): Path<String>) -> Answer<Json<Deployment>> {
    Ok(Json(api.jm.deployment(&name)?))
}

async fn delete(State(api): State<Api>, Path(name): Path<String>) -> Answer<Json<Deployment>> {
    Ok(Json(api.jm.delete_deployment(&name)?))
}

async fn suspend(State(api): State<Api>, Path(name): Path<String>) -> Answer<Response> {
    Ok(json(StatusCode::ACCEPTED, api.jm.set_deployment_state(&name, DesiredState::Suspended)?))
}

async fn resume(State(api): State<Api>, Path(name): Path<String>) -> Answer<Response> {
    Ok(json(StatusCode::ACCEPTED, api.jm.set_deployment_state(&name, DesiredState::Running)?))
}
