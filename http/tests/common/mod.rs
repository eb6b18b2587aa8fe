//! What the HTTP API's tests share: a runtime on a temp SQLite file with a
//! few workflows registered, the router over its client, requests sent
//! in-process, and waits that end on observed state, not on time passing.

// Each test binary uses a part of this module; the rest is not dead code
// for the binaries that use it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use durable::{activity, entity, orchestrator, ActivityError, Builder, Client, Context, Runtime};
use durable_http::{router, ApiOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::ServiceExt;

/// How long a test waits for anything before it fails: generous, so that
/// a loaded machine makes a test slower, never makes it fail.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// The pause between two looks at state being waited for.
const LOOK_AGAIN: Duration = Duration::from_millis(10);

/// An order: the input of [`price_order`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) customer: String,
    pub(crate) quantity: u32,
}

/// The price of `quantity` items, in cents.
#[activity]
pub(crate) async fn price(quantity: u32) -> u64 {
    u64::from(quantity) * 250
}

/// Prices an order with one activity call.
#[orchestrator]
pub(crate) async fn price_order(ctx: Context, order: Order) -> String {
    let cents = ctx.call(price, order.quantity).await.unwrap_or_default();
    format!("{} pays {cents}", order.customer)
}

/// Waits for the event `go` and returns its data.
#[orchestrator]
pub(crate) async fn wait_for_go(ctx: Context) -> String {
    ctx.wait_event::<String>("go").await
}

/// Takes `n` events `item`, in order, and returns their data.
#[orchestrator]
pub(crate) async fn collect(ctx: Context, n: u32) -> Vec<String> {
    let mut items = Vec::new();
    for _ in 0..n {
        items.push(ctx.wait_event::<String>("item").await);
    }
    items
}

/// Always fails, with `reason`.
#[activity]
pub(crate) async fn refuse(reason: String) -> Result<(), String> {
    Err(reason)
}

/// Calls [`refuse`] and returns its error as its own.
#[orchestrator]
pub(crate) async fn refused(ctx: Context, reason: String) -> Result<(), String> {
    match ctx.call(refuse, reason).await {
        Ok(()) => Ok(()),
        Err(ActivityError::Failed(e)) => Err(e),
        Err(other) => Err(format!("not the activity's own error: {other:?}")),
    }
}

/// Panics: the instance fails outside its return value.
#[orchestrator]
pub(crate) async fn crash(_ctx: Context) -> u32 {
    panic!("the crash orchestrator gave up")
}

/// Takes no input and returns at once.
#[orchestrator]
pub(crate) async fn noop(_ctx: Context) -> String {
    "nothing to do".to_owned()
}

/// An entity counting values added to it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) total: u64,
}

#[entity]
impl Tally {
    pub(crate) fn add(&mut self, value: u64) {
        self.count += 1;
        self.total += value;
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The orchestrators every test runtime registers, by stored name.
pub(crate) const ORCHESTRATORS: [&str; 6] = [
    "collect",
    "crash",
    "noop",
    "price_order",
    "refused",
    "wait_for_go",
];

fn register(builder: Builder) -> Builder {
    builder
        .activity(price)
        .activity(refuse)
        .orchestrator(price_order)
        .orchestrator(wait_for_go)
        .orchestrator(collect)
        .orchestrator(refused)
        .orchestrator(crash)
        .orchestrator(noop)
        .entity::<Tally>()
}

/// A runtime on a temp SQLite file and the API's router over its client.
pub(crate) struct Api {
    /// The router requests go to: the API's own, or one it is mounted in.
    pub(crate) app: Router,
    pub(crate) client: Client,
    runtime: Runtime,
    /// Dropped last: the database file lives in it.
    _dir: tempfile::TempDir,
}

/// The API with default options over a runtime with default limits.
pub(crate) async fn api() -> Api {
    api_with(|b| b, ApiOptions::default()).await
}

/// The API with `options` over a runtime whose builder `customize` adjusts.
pub(crate) async fn api_with(
    customize: impl FnOnce(Builder) -> Builder,
    options: ApiOptions,
) -> Api {
    let dir = tempfile::tempdir().expect("a temp dir");
    let builder = Runtime::builder()
        .sqlite(dir.path().join("durable.db"))
        .poll_interval(Duration::from_millis(50));
    let runtime = customize(register(builder))
        .start()
        .await
        .expect("the runtime starts");
    let client = runtime.client();
    let app = router(client.clone(), options);
    Api {
        app,
        client,
        runtime,
        _dir: dir,
    }
}

/// An answer of the API, its body read.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The body as JSON; a body that is not JSON is its text as a JSON
    /// string, and an empty one `null`.
    pub(crate) body: Value,
}

impl Reply {
    /// A header's value as text (`""` when absent).
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
            .unwrap_or_default()
    }

    /// The body's field `name` as text (panics when it is not text).
    pub(crate) fn text(&self, name: &str) -> &str {
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("`{name}` is not text in {}", self.body))
    }

    /// Asserts the status and that the body is an API error with `code`.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"], code, "{}", self.body);
        assert!(
            self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "an error says what went wrong: {}",
            self.body
        );
    }
}

impl Api {
    /// Sends `request` to the router and reads the whole answer.
    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .app
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = within(axum::body::to_bytes(response.into_body(), usize::MAX))
            .await
            .expect("the body reads");
        let text = String::from_utf8(bytes.to_vec()).expect("a UTF-8 body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Sends `method` to `uri` with `body` and `headers`.
    pub(crate) async fn request(
        &self,
        method: Method,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::from(body.to_owned()))
            .expect("a valid request");
        self.send(request).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Reply {
        self.request(Method::GET, uri, "", &[]).await
    }

    pub(crate) async fn post(&self, uri: &str, body: &str) -> Reply {
        self.request(Method::POST, uri, body, &[]).await
    }

    pub(crate) async fn delete(&self, uri: &str) -> Reply {
        self.request(Method::DELETE, uri, "", &[]).await
    }

    /// Starts orchestrator `name` with `input` (as JSON text) through the
    /// API and returns the new instance's id.
    pub(crate) async fn start(&self, name: &str, query: &str, input: &str) -> String {
        let reply = self
            .post(&format!("/orchestrations/{name}{query}"), input)
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.text("id").to_owned()
    }

    /// Waits until instance `id` has finished (its status URL answers
    /// 200) and returns that answer.
    pub(crate) async fn finished(&self, id: &str) -> Reply {
        let uri = format!("/instances/{}", escape(id));
        until(&format!("instance {id} to finish"), || async {
            let reply = self.get(&uri).await;
            (reply.status == StatusCode::OK).then_some(reply)
        })
        .await
    }

    /// Waits until instance `id` reports `status`.
    pub(crate) async fn reaches(&self, id: &str, status: &str) -> Reply {
        let uri = format!("/instances/{}", escape(id));
        until(&format!("instance {id} to be {status}"), || async {
            let reply = self.get(&uri).await;
            (reply.body["status"] == status).then_some(reply)
        })
        .await
    }

    /// Waits until the history of `id` holds an event of `kind` (its
    /// externally tagged name, as `Terminated`) and returns that event's
    /// fields.
    pub(crate) async fn event_of(&self, id: &str, kind: &str) -> Value {
        let uri = format!("/instances/{}/history", escape(id));
        until(
            &format!("a {kind} event in the history of {id}"),
            || async {
                let reply = self.get(&uri).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
                reply.body["events"]
                    .as_array()
                    .expect("events")
                    .iter()
                    .find_map(|e| e["event"].get(kind).cloned())
            },
        )
        .await
    }

    /// Stops the runtime (the temp dir goes after it).
    pub(crate) async fn stop(self) {
        self.runtime.shutdown().await.expect("the runtime stops");
    }
}

/// `s` escaped for a URL's path segment or query value: everything but
/// unreserved characters as `%XX`.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits for `f`, failing the test rather than hanging it.
pub(crate) async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("finished within the test's patience")
}

/// Looks at some state again and again until `probe` finds what it waits
/// for (`Some`), and returns that; fails the test after [`PATIENCE`].
pub(crate) async fn until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(LOOK_AGAIN).await;
    }
}
