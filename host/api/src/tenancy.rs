//! The admin's routes (issue 19): tenants, their tokens and quotas. A tenant's token
//! gets what an unknown route answers: tenants do not learn these exist.

use std::time::{Duration, SystemTime};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use weir_documents::{Grants, Hosts, NewToken, Quota, Roots, Tenant, TenantList, TenantSpec, Token, TokenList, TokenSpec, time};
use weir_jobmanager::Caller;
use weir_jobmanager::model::ApiError;
use weir_jobmanager::tenants::{self, TokenInfo};
use weir_types::access::Capabilities;

use crate::{Answer, Api, Failed, json, no_such_route};

/// A JSON object body (serde would also take a struct from an array).
fn parse<T: serde::de::DeserializeOwned>(read: Result<Bytes, BytesRejection>, what: &str) -> Result<T, Failed> {
    let value: serde_json::Value = crate::parse(read, what)?;
    if !value.is_object() {
        return Err(Failed(ApiError::BadRequest(format!("invalid {what}: expected a JSON object"))));
    }
    serde_json::from_value(value).map_err(|e| Failed(ApiError::BadRequest(format!("invalid {what}: {e}"))))
}

fn admin(caller: &Caller) -> Result<(), Failed> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Tenant(_) => Err(no_such_route()),
    }
}

fn at(ms: u64) -> String {
    time(SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// The JobManager's quota; a limit JSON clients cannot hold exactly (past int64) is
/// refused.
fn quota_in(q: Quota) -> Result<tenants::Quota, Failed> {
    if let Some(b) = q.artifact_bytes.filter(|b| i64::try_from(*b).is_err()) {
        return Err(Failed(ApiError::BadRequest(format!("artifactBytes must be at most {}, got {b}", i64::MAX))));
    }
    if let Some(f) = q.fuel_per_second.filter(|f| *f == 0 || i64::try_from(*f).is_err()) {
        return Err(Failed(ApiError::BadRequest(format!("fuelPerSecond must be from 1 to {} (leave it out for unlimited), got {f}", i64::MAX))));
    }
    Ok(tenants::Quota { slots: q.slots, running_jobs: q.running_jobs, artifact_bytes: q.artifact_bytes, fuel_per_second: q.fuel_per_second })
}

/// Capability names, each known, none twice.
fn grants_in(names: &[String]) -> Result<Capabilities, Failed> {
    let bad = |m: String| Failed(ApiError::BadRequest(format!("invalid grants: {m}")));
    if let Some(n) = names.iter().find(|n| n.contains(',') || n.trim().is_empty()) {
        return Err(bad(format!("{n:?} is not one capability name (known: {})", Capabilities::NAMES.join(", "))));
    }
    if let Some((i, n)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
        return Err(bad(format!("{n:?} is named twice (at {i})")));
    }
    Capabilities::parse(&names.join(",")).map_err(bad)
}

/// Hosts as `host` or `host:port`: no scheme, path, space or empty part.
fn hosts_in(hosts: Vec<String>) -> Result<Vec<String>, Failed> {
    for h in &hosts {
        let (host, port) = h.rsplit_once(':').map_or((h.as_str(), None), |(h, p)| (h, Some(p)));
        let host_ok = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
        if !host_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(Failed(ApiError::BadRequest(format!("invalid hosts: {h:?} is not host or host:port"))));
        }
    }
    Ok(hosts)
}

fn tenant_doc(api: &Api, t: tenants::Tenant) -> Answer<Tenant> {
    let u = api.jm.usage(&t.name)?;
    let q = t.quota;
    Ok(Tenant {
        name: t.name,
        created_at: at(t.created_ms),
        quota: Quota { slots: q.slots, running_jobs: q.running_jobs, artifact_bytes: q.artifact_bytes, fuel_per_second: q.fuel_per_second },
        grants: t.grants.names().into_iter().map(String::from).collect(),
        hosts: t.hosts,
        roots: t.roots,
        usage: weir_documents::Usage {
            running_jobs: u.running_jobs,
            slots: u.slots,
            artifact_bytes: u.artifact_bytes,
            fuel: u.fuel,
            fuel_failed_attempts: u.fuel_failed_attempts,
        },
    })
}

fn token_doc(t: TokenInfo) -> Token {
    Token { id: t.id, tenant: t.tenant, created_at: at(t.created_ms), expires_at: t.expires_ms.map(at), revoked: t.revoked }
}

pub(crate) async fn tenants(State(api): State<Api>, Extension(caller): Extension<Caller>) -> Answer<axum::Json<TenantList>> {
    admin(&caller)?;
    let tenants = api.jm.tenants().into_iter().map(|t| tenant_doc(&api, t)).collect::<Result<_, _>>()?;
    Ok(axum::Json(TenantList { tenants }))
}

pub(crate) async fn create(State(api): State<Api>, Extension(caller): Extension<Caller>, read: Result<Bytes, BytesRejection>) -> Answer<Response> {
    admin(&caller)?;
    let spec: TenantSpec = parse(read, "tenant")?;
    let (grants, hosts) = (grants_in(&spec.grants)?, hosts_in(spec.hosts)?);
    let mut t = api.jm.create_tenant(&spec.name, quota_in(spec.quota)?, grants)?;
    if !hosts.is_empty() {
        t = api.jm.set_hosts(&spec.name, hosts)?;
    }
    Ok(json(StatusCode::CREATED, tenant_doc(&api, t)?))
}

pub(crate) async fn tenant(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(name): Path<String>) -> Answer<axum::Json<Tenant>> {
    admin(&caller)?;
    let t = api.jm.tenant(&name)?;
    Ok(axum::Json(tenant_doc(&api, t)?))
}

/// One of the admin's `PUT /tenants/{name}/...` settings: the body `what` parsed as
/// `B`, applied by `apply`, answered with the tenant as it is now.
fn set<B: serde::de::DeserializeOwned>(
    (api, caller): (&Api, &Caller),
    read: Result<Bytes, BytesRejection>,
    what: &str,
    apply: impl FnOnce(B) -> Result<tenants::Tenant, Failed>,
) -> Answer<axum::Json<Tenant>> {
    admin(caller)?;
    let t = apply(parse(read, what)?)?;
    Ok(axum::Json(tenant_doc(api, t)?))
}

type Setting = (State<Api>, Extension<Caller>, Path<String>);

pub(crate) async fn quota((State(api), Extension(caller), Path(name)): Setting, read: Result<Bytes, BytesRejection>) -> Answer<axum::Json<Tenant>> {
    set((&api, &caller), read, "quota", |q: Quota| Ok(api.jm.set_quota(&name, quota_in(q)?)?))
}

pub(crate) async fn grants((State(api), Extension(caller), Path(name)): Setting, read: Result<Bytes, BytesRejection>) -> Answer<axum::Json<Tenant>> {
    set((&api, &caller), read, "grants", |g: Grants| Ok(api.jm.set_grants(&name, grants_in(&g.grants)?)?))
}

pub(crate) async fn hosts((State(api), Extension(caller), Path(name)): Setting, read: Result<Bytes, BytesRejection>) -> Answer<axum::Json<Tenant>> {
    set((&api, &caller), read, "hosts", |h: Hosts| Ok(api.jm.set_hosts(&name, hosts_in(h.hosts)?)?))
}

pub(crate) async fn roots((State(api), Extension(caller), Path(name)): Setting, read: Result<Bytes, BytesRejection>) -> Answer<axum::Json<Tenant>> {
    set((&api, &caller), read, "roots", |r: Roots| Ok(api.jm.set_roots(&name, r.roots)?))
}

pub(crate) async fn tokens(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(name): Path<String>) -> Answer<axum::Json<TokenList>> {
    admin(&caller)?;
    Ok(axum::Json(TokenList { tokens: api.jm.tokens(Some(&name))?.into_iter().map(token_doc).collect() }))
}

pub(crate) async fn issue(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    read: Result<Bytes, BytesRejection>,
) -> Answer<Response> {
    admin(&caller)?;
    let spec: TokenSpec = parse(read, "token request")?;
    const TEN_YEARS: u64 = 10 * 366 * 86_400;
    let expires_in_ms = match spec.expires_in_seconds {
        Some(s) if s == 0 || s > TEN_YEARS => {
            return Err(Failed(ApiError::BadRequest(format!(
                "expiresInSeconds must be 1 to {TEN_YEARS} (ten years; leave it out for never), got {s}"
            ))));
        }
        s => s.map(|s| s * 1000),
    };
    let (info, token) = api.jm.issue_token(&name, expires_in_ms)?;
    Ok(json(StatusCode::CREATED, NewToken { token, details: token_doc(info) }))
}

pub(crate) async fn revoke(State(api): State<Api>, Extension(caller): Extension<Caller>, Path(id): Path<String>) -> Answer<axum::Json<Token>> {
    admin(&caller)?;
    Ok(axum::Json(token_doc(api.jm.revoke_token(&id)?)))
}
