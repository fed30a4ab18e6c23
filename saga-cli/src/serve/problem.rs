//! A failed request: the status of its [`Code`] and a JSON body,
//! `{"code": "not_found", "message": "no execution with id `x`"}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::{CliError, Code};

/// A [`CliError`] on its way out as an HTTP response.
#[derive(Debug)]
pub(crate) struct Problem(pub(crate) CliError);

impl From<CliError> for Problem {
    fn from(e: CliError) -> Self {
        Problem(e)
    }
}

impl Problem {
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Problem(CliError::bad_input(message))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"code": e.code.name(), "message": e.message}).to_string();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Unknown paths answer in the same shape as every other failure.
pub(crate) async fn no_route() -> Problem {
    Problem(CliError::new(
        Code::NotFound,
        "no such route: see /openapi.json",
    ))
}
