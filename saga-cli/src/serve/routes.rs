//! The router: each handler reads its request, calls the operation the CLI command
//! calls ([`crate::ops`]) and answers with its result as JSON, or a [`Problem`].
//!
//! Bodies are read as bytes and parsed here, and path parameters through `Result`,
//! so that malformed input gets the API's JSON error body rather than axum's text.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::problem::{self, Problem};
use super::{metrics, openapi, AppState};
use crate::args::ListArgs;
use crate::error::CliError;
use crate::ops::dead_letters;
use crate::ops::executions::{self as ops, StartRequest};

type Shared = State<Arc<AppState>>;
type Reply<T> = Result<T, Problem>;

/// Every route; the dead-letter routes only with a task queue (`--nats`).
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/executions", get(list).post(start))
        .route("/executions/{id}", get(describe))
        .route("/executions/{id}/history", get(history))
        .route("/executions/{id}/diagram", get(execution_diagram))
        .route("/executions/{id}/signals", post(signal))
        .route("/executions/{id}/cancel", post(cancel))
        .route("/workflows", get(definitions))
        .route("/workflows/{workflow_type}/diagram", get(workflow_diagram))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_document));
    if state.queue.is_some() {
        router = router
            .route("/dead-letters", get(list_dead_letters))
            .route("/dead-letters/redrive", post(redrive_dead_letters));
    }
    router.fallback(problem::no_route).with_state(state)
}

/// The query's parameters, each checked against the names the route takes.
fn query_pairs(query: Option<&str>, allowed: &[&str]) -> Reply<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(Problem::bad_input(format!(
            "unknown query parameter `{k}`: this route takes {}",
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        )));
    }
    Ok(pairs)
}

/// The single value of parameter `name`; given twice is bad input.
fn single(pairs: &[(String, String)], name: &str) -> Reply<Option<String>> {
    let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
    let first = values.next().cloned();
    if values.next().is_some() {
        return Err(Problem::bad_input(format!(
            "query parameter `{name}` is given more than once"
        )));
    }
    Ok(first)
}

/// A path parameter, or bad input (undecodable percent-escapes).
fn path<T>(p: Result<Path<T>, PathRejection>) -> Reply<T> {
    p.map(|Path(v)| v)
        .map_err(|e| Problem::bad_input(format!("bad path parameter: {e}")))
}

/// A JSON body of type `T`.
/// A request body: a JSON object of the route's fields. (Read as a `Value` first:
/// serde would also take a JSON array as a struct, its fields in order, which the
/// OpenAPI document does not allow; schemathesis found it.)
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Reply<T> {
    let invalid =
        |e: serde_json::Error| Problem::bad_input(format!("the request body is not valid: {e}"));
    let value: Value = serde_json::from_slice(bytes).map_err(invalid)?;
    if !value.is_object() {
        return Err(Problem::bad_input(
            "the request body is not valid: it must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(invalid)
}

async fn list(State(s): Shared, RawQuery(q): RawQuery) -> Reply<Response> {
    let pairs = query_pairs(
        q.as_deref(),
        &["type", "status", "since", "until", "attr", "limit"],
    )?;
    let limit = single(&pairs, "limit")?
        .map(|l| {
            l.parse::<usize>().map_err(|_| {
                Problem::bad_input(format!("limit `{l}` is not a non-negative integer"))
            })
        })
        .transpose()?;
    // The CLI's options, so that the filter is built by the same code.
    let args = ListArgs {
        workflow_type: single(&pairs, "type")?,
        status: single(&pairs, "status")?,
        since: single(&pairs, "since")?,
        until: single(&pairs, "until")?,
        attrs: pairs
            .iter()
            .filter(|(k, _)| k == "attr")
            .map(|(_, v)| v.clone())
            .collect(),
        limit,
    };
    let filter = ops::filter(&args)?;
    Ok(Json(ops::list(&s.client, &filter).await?).into_response())
}

async fn describe(State(s): Shared, id: Result<Path<String>, PathRejection>) -> Reply<Response> {
    let id = path(id)?;
    Ok(Json(ops::describe(&s.client, &id).await?).into_response())
}

async fn history(State(s): Shared, id: Result<Path<String>, PathRejection>) -> Reply<Response> {
    let id = path(id)?;
    Ok(Json(ops::history(&s.client, &id).await?).into_response())
}

async fn execution_diagram(
    State(s): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Reply<Response> {
    let id = path(id)?;
    Ok(Json(ops::execution_diagram(&s.client, &id).await?).into_response())
}

async fn workflow_diagram(
    State(s): Shared,
    t: Result<Path<String>, PathRejection>,
) -> Reply<Response> {
    let t = path(t)?;
    Ok(Json(ops::workflow_diagram(&s.client, &t).await?).into_response())
}

async fn definitions(State(s): Shared) -> Reply<Response> {
    Ok(Json(ops::definitions(&s.client).await?).into_response())
}

/// `POST /executions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    workflow_type: String,
    input: Value,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    task_queue: Option<String>,
}

async fn start(State(s): Shared, bytes: Bytes) -> Reply<Response> {
    let b: StartBody = body(&bytes)?;
    let req = StartRequest {
        workflow_type: b.workflow_type,
        input: b.input,
        id: b.id,
        timeout_secs: b.timeout_secs,
        task_queue: b.task_queue,
    };
    let started = ops::start(&s.client, req).await?;
    let location = format!("/executions/{}", path_segment(started.saga_id.as_str()));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(started),
    )
        .into_response())
}

/// `id` percent-encoded as one path segment: ids may hold any character, and a
/// header value only visible ASCII.
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `POST /executions/{id}/signals`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBody {
    name: String,
    #[serde(default)]
    payload: Value,
}

async fn signal(
    State(s): Shared,
    id: Result<Path<String>, PathRejection>,
    bytes: Bytes,
) -> Reply<Response> {
    let id = path(id)?;
    let b: SignalBody = body(&bytes)?;
    let sent = ops::signal(&s.client, &id, &b.name, b.payload).await?;
    Ok((StatusCode::ACCEPTED, Json(sent)).into_response())
}

async fn cancel(State(s): Shared, id: Result<Path<String>, PathRejection>) -> Reply<Response> {
    let id = path(id)?;
    let cancelled = ops::cancel(&s.client, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(cancelled)).into_response())
}

async fn metrics(State(s): Shared) -> Reply<Response> {
    let text = metrics::render(&s).await?;
    Ok((
        [(header::CONTENT_TYPE, saga_runtime::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response())
}

async fn openapi_document(State(s): Shared) -> Response {
    Json(openapi::document(s.queue.is_some())).into_response()
}

fn task_queue(s: &AppState) -> Reply<&saga_adapters::NatsTaskQueue> {
    // The routes exist only with a queue; this guards a future change of that.
    s.queue.as_ref().ok_or_else(|| {
        Problem(CliError::unreachable(
            "no task queue: serve with --nats URL",
        ))
    })
}

async fn list_dead_letters(State(s): Shared, RawQuery(q): RawQuery) -> Reply<Response> {
    let pairs = query_pairs(q.as_deref(), &["queue"])?;
    let queue = single(&pairs, "queue")?.unwrap_or_else(|| "default".to_owned());
    let mut letters = dead_letters::list(task_queue(&s)?, &queue).await?;
    dead_letters::annotate(&s.client, &mut letters).await?;
    Ok(Json(letters).into_response())
}

async fn redrive_dead_letters(State(s): Shared, RawQuery(q): RawQuery) -> Reply<Response> {
    let pairs = query_pairs(q.as_deref(), &["queue", "id"])?;
    let queue = single(&pairs, "queue")?.unwrap_or_else(|| "default".to_owned());
    let id = single(&pairs, "id")?;
    let redriven = dead_letters::redrive(task_queue(&s)?, &queue, id.as_deref()).await?;
    Ok(Json(redriven).into_response())
}
