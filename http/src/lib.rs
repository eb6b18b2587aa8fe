//! An HTTP API for `durable`: start orchestrations, follow and steer their
//! instances, and read and signal entities over HTTP.
//!
//! This is the "async HTTP API" pattern: `POST /orchestrations/{name}`
//! starts an instance and answers `202 Accepted` with its status URL in
//! `Location`; that URL answers `202` while the instance runs and `200`
//! with its output once it has finished. [`router`] is an axum [`Router`]
//! to mount in a server of your own (under any prefix: the URLs it hands
//! out follow the prefix); [`serve`] is a ready server.
//!
//! ```no_run
//! # async fn go(runtime: durable::Runtime) -> Result<(), Box<dyn std::error::Error>> {
//! use durable_http::{serve, ApiOptions};
//!
//! // Localhost needs no token; any other address refuses to start without one.
//! let server = serve(runtime.client(), "127.0.0.1:8080".parse()?, ApiOptions::default()).await?;
//! println!("listening on http://{}", server.local_addr());
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Every route, its parameters and answers are in `GET /openapi.json`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;

mod error;
mod extract;
mod handlers;
mod metrics;
mod openapi;
mod stream;
mod ui;

pub use error::ServeError;

/// Settings of the API.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ApiOptions {
    /// The bearer token every request must carry
    /// (`Authorization: Bearer <token>`); `None` checks nothing, which
    /// [`serve`] allows only on a loopback address.
    pub token: Option<String>,
    /// The largest request body, in bytes; `None` is the runtime's payload
    /// limit (`Builder::max_payload`), as a body is a payload.
    pub max_body: Option<usize>,
}

impl ApiOptions {
    /// Options that require `token` on every request.
    pub fn with_token(token: impl Into<String>) -> Self {
        Self {
            token: Some(token.into()),
            max_body: None,
        }
    }
}

/// What every handler shares.
pub(crate) struct Api {
    pub(crate) client: durable::Client,
    pub(crate) token: Option<String>,
    pub(crate) max_body: usize,
}

/// The API's routes, to mount in a server of your own (`Router::nest`
/// keeps the URLs it hands out under your prefix).
pub fn router(client: durable::Client, options: ApiOptions) -> Router {
    let max_body = options.max_body.unwrap_or_else(|| client.max_payload());
    handlers::routes(Arc::new(Api {
        client,
        // An empty token would let `Bearer ` through: it is no token.
        token: options.token.filter(|t| !t.trim().is_empty()),
        max_body,
    }))
}

/// A running server; see [`serve`].
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// The address it listens on (the port chosen, when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking connections and waits for the requests in flight (an
    /// open event stream ends when its instance does, or when the client
    /// goes).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Serves the API on `addr` until [`Server::shutdown`].
///
/// # Errors
/// [`ServeError::TokenRequired`] for an address other than loopback without
/// a token (the API starts, stops and purges instances: it is not served to
/// a network unauthenticated), [`ServeError::Bind`] when the address
/// cannot be bound.
pub async fn serve(
    client: durable::Client,
    addr: SocketAddr,
    options: ApiOptions,
) -> Result<Server, ServeError> {
    if !addr.ip().is_loopback() && options.token.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Err(ServeError::TokenRequired { addr });
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let app = router(client, options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server {
        addr,
        stop: Some(stop),
        task,
    })
}
