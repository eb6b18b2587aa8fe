//! Errors: the server's own, and every failure of a request as a status
//! code with a JSON body `{"error": code, "message": text}`.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use durable::store::StoreError;
use durable::Error;

/// Why [`serve`](crate::serve) could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Asked to listen beyond loopback without a bearer token.
    #[error("{addr} is reachable from other machines: set a bearer token (ApiOptions::token) to serve there, or bind 127.0.0.1")]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A request's failure: its status, a stable code and a message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let (status, code) = match &e {
            Error::InstanceExists { .. } => (StatusCode::CONFLICT, "instance_exists"),
            Error::InstanceNotFound { .. } => (StatusCode::NOT_FOUND, "instance_not_found"),
            Error::InstanceFinished { .. } => (StatusCode::GONE, "instance_finished"),
            Error::InvalidState { .. } => (StatusCode::CONFLICT, "invalid_state"),
            Error::InvalidToken { .. } => (StatusCode::BAD_REQUEST, "invalid_token"),
            Error::InvalidName { .. } => (StatusCode::BAD_REQUEST, "invalid_name"),
            Error::UnregisteredOrchestrator { .. } => {
                (StatusCode::NOT_FOUND, "unknown_orchestrator")
            }
            Error::UnregisteredEntity { .. } => (StatusCode::NOT_FOUND, "unknown_entity"),
            Error::BadOperation { .. } => (StatusCode::BAD_REQUEST, "bad_operation"),
            Error::Payload { .. } => (StatusCode::BAD_REQUEST, "bad_payload"),
            Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Error::EntityState { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "entity_state"),
            Error::Shutdown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            Error::Store(s) if s.is_transient() || matches!(s, StoreError::Busy) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
