//! A server's instances through its HTTP API (`durable-http`), with the
//! bearer token in the `Authorization` header and never in a URL.

use std::time::{Duration, Instant};

use durable::history::HistoryRecord;
use durable::{Failure, RuntimeStatus};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Backend, Filter, Instance, Page};
use crate::error::{exit, CliError};
use crate::time::parse_rfc3339;

/// How long one request may take, connecting included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The most history events asked for in one request (the API's limit).
const HISTORY_PAGE: usize = 10_000;

/// The HTTP API at a base URL.
pub(crate) struct Remote {
    agent: ureq::Agent,
    /// The base URL, without a trailing `/`.
    base: String,
    /// `Bearer <token>`.
    authorization: Option<String>,
}

/// An answer: its status and its body as text.
struct Answer {
    status: u16,
    body: String,
}

/// The API's error body.
#[derive(Deserialize)]
struct ApiError {
    error: String,
    message: String,
}

/// The API's status shape (extra fields, such as `urls`, are ignored).
#[derive(Deserialize)]
struct StatusJson {
    id: String,
    orchestrator: String,
    status: RuntimeStatus,
    created_at: String,
    updated_at: String,
    history_len: u64,
    output: Option<Value>,
    failure: Option<Failure>,
    terminated: Option<String>,
    custom_status: Option<Value>,
}

#[derive(Deserialize)]
struct PageJson {
    instances: Vec<StatusJson>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct WaitingJson {
    waiting_on: Vec<Value>,
}

#[derive(Deserialize)]
struct HistoryJson {
    events: Vec<HistoryRecord>,
    next: Option<u64>,
}

impl Remote {
    /// The API at `url` (`http://host:port`, optionally with the path it is
    /// mounted under).
    ///
    /// # Errors
    /// A URL that is not `http` or `https`, or that carries credentials or a
    /// query (a token belongs in `--token` or `DURABLE_TOKEN`, never in a
    /// URL, where logs and shell histories keep it).
    pub(crate) fn new(url: &str, token: Option<String>) -> Result<Self, CliError> {
        let url = url.trim();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| {
                CliError::usage(format!("--url `{url}` is not an http:// or https:// URL"))
                    .hint("write it as http://host:port, the address the durable HTTP API prints when it starts")
            })?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(CliError::usage(format!("--url `{url}` names no host")));
        }
        if authority.contains('@') || url.contains('?') || url.contains('#') {
            return Err(CliError::usage(
                "--url carries credentials or a query: a token never goes in a URL (logs and shell histories keep it)",
            )
            .hint("give the URL alone, and the token with --token or (better) the DURABLE_TOKEN environment variable"));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("durable-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        let token = token.filter(|t| !t.is_empty());
        if token.is_some() && url.starts_with("http://") {
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            let loopback = matches!(host, "localhost" | "[::1]") || host.starts_with("127.");
            if !loopback {
                eprintln!("warning: the bearer token goes to {authority} unencrypted over http://; use https:// beyond this machine");
            }
        }
        Ok(Self {
            agent: config.into(),
            base: url.trim_end_matches('/').to_owned(),
            authorization: token.map(|t| format!("Bearer {t}")),
        })
    }

    fn instance_url(&self, id: &str) -> String {
        format!("{}/instances/{}", self.base, segment(id))
    }

    /// Sends a request and reads the answer; an error status is turned into
    /// the command's error.
    fn send(
        &self,
        method: &str,
        url: &str,
        query: &[(&str, String)],
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, CliError> {
        let unreachable = |e: ureq::Error| {
            CliError::new(
                exit::UNAVAILABLE,
                format!("cannot reach the durable HTTP API at {}: {e}", self.base),
            )
            .hint("is the server running, and is --url (or DURABLE_URL) its address?")
        };
        let response = match method {
            "GET" | "DELETE" => {
                let mut request = if method == "GET" {
                    self.agent.get(url)
                } else {
                    self.agent.delete(url)
                };
                for (k, v) in query {
                    request = request.query(*k, v);
                }
                if let Some(a) = &self.authorization {
                    request = request.header("Authorization", a);
                }
                for (k, v) in headers {
                    request = request.header(*k, *v);
                }
                request.call()
            }
            _ => {
                let mut request = self.agent.post(url);
                for (k, v) in query {
                    request = request.query(*k, v);
                }
                if let Some(a) = &self.authorization {
                    request = request.header("Authorization", a);
                }
                for (k, v) in headers {
                    request = request.header(*k, *v);
                }
                match body {
                    Some(body) => request
                        .header("Content-Type", "application/json")
                        .send(body),
                    None => request.send_empty(),
                }
            }
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .map_err(unreachable)?;
        let answer = Answer { status, body };
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(self.refusal(&answer))
        }
    }

    /// The command's error for an answer with an error status.
    fn refusal(&self, answer: &Answer) -> CliError {
        let (code, message) = match serde_json::from_str::<ApiError>(&answer.body) {
            Ok(e) => (e.error, e.message),
            Err(_) => (
                String::new(),
                format!(
                    "the server at {} answered {}: {}",
                    self.base,
                    answer.status,
                    answer.body.trim()
                ),
            ),
        };
        match (answer.status, code.as_str()) {
            (401, _) => {
                let hint = if self.authorization.is_some() {
                    "the token was refused: check --token or DURABLE_TOKEN"
                } else {
                    "this API wants a bearer token: set DURABLE_TOKEN (or pass --token)"
                };
                CliError::new(exit::UNAUTHORIZED, message).hint(hint)
            }
            (404, "instance_not_found") => CliError::new(exit::NOT_FOUND, message)
                .hint("`durable list` shows the instances (`--prefix` narrows it)"),
            (404, "no_route") => CliError::new(
                exit::UNAVAILABLE,
                format!("{} does not serve the durable HTTP API: {message}", self.base),
            )
            .hint("--url takes the address the API is served at, with the path it is mounted under if any"),
            (409 | 410, _) => {
                let hint = if code == "invalid_state" && message.contains("purge") {
                    "only finished instances are purged: terminate it first (`durable terminate ID --reason ..`) or wait for it"
                } else {
                    "`durable describe ID` shows its status"
                };
                CliError::new(exit::REFUSED, message).hint(hint)
            }
            (400 | 413, _) => CliError::usage(message),
            (503, _) => CliError::new(exit::UNAVAILABLE, message).hint("try again"),
            _ => CliError::new(exit::INTERNAL, message),
        }
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        url: &str,
        query: &[(&str, String)],
    ) -> Result<T, CliError> {
        let answer = self.send("GET", url, query, None, &[])?;
        serde_json::from_str(&answer.body).map_err(|e| {
            CliError::new(
                exit::INTERNAL,
                format!(
                    "the server at {} answered what this command does not read: {e}",
                    self.base
                ),
            )
            .hint("is the server a durable HTTP API of the same release?")
        })
    }

    fn reason(&self, what: &str, id: &str, reason: &str) -> Result<(), CliError> {
        let body = serde_json::json!({ "reason": reason }).to_string();
        self.send(
            "POST",
            &format!("{}/{what}", self.instance_url(id)),
            &[],
            Some(&body),
            &[],
        )?;
        Ok(())
    }
}

impl StatusJson {
    fn into_instance(self) -> Result<Instance, CliError> {
        let time = |t: &str| {
            parse_rfc3339(t).ok_or_else(|| {
                CliError::new(exit::INTERNAL, format!("the server sent `{t}` as a time"))
            })
        };
        Ok(Instance {
            created_at: time(&self.created_at)?,
            updated_at: time(&self.updated_at)?,
            id: self.id,
            orchestrator: self.orchestrator,
            status: self.status,
            history_len: self.history_len,
            output: self.output,
            failure: self.failure,
            terminated: self.terminated,
            custom_status: self.custom_status,
        })
    }
}

impl Backend for Remote {
    fn list(
        &mut self,
        filter: &Filter,
        page_size: usize,
        after: Option<&str>,
    ) -> Result<Page, CliError> {
        let mut query = vec![("page_size", page_size.to_string())];
        if !filter.statuses.is_empty() {
            let statuses: Vec<String> = filter.statuses.iter().map(ToString::to_string).collect();
            query.push(("status", statuses.join(",")));
        }
        if let Some(o) = &filter.orchestrator {
            query.push(("orchestrator", o.clone()));
        }
        if let Some(p) = &filter.prefix {
            query.push(("prefix", p.clone()));
        }
        if let Some(a) = after {
            query.push(("after", a.to_owned()));
        }
        let page: PageJson = self.get(&format!("{}/instances", self.base), &query)?;
        Ok(Page {
            instances: page
                .instances
                .into_iter()
                .map(StatusJson::into_instance)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    fn status(&mut self, id: &str) -> Result<Instance, CliError> {
        let status: StatusJson = self.get(&self.instance_url(id), &[])?;
        status.into_instance()
    }

    fn first_event(&mut self, id: &str) -> Result<Option<HistoryRecord>, CliError> {
        let url = format!("{}/history", self.instance_url(id));
        let page: HistoryJson =
            self.get(&url, &[("from", "0".to_owned()), ("limit", "1".to_owned())])?;
        Ok(page.events.into_iter().next())
    }

    fn history(&mut self, id: &str, from: u64) -> Result<Vec<HistoryRecord>, CliError> {
        let url = format!("{}/history", self.instance_url(id));
        let mut events = Vec::new();
        let mut next = Some(from);
        while let Some(from) = next {
            let page: HistoryJson = self.get(
                &url,
                &[
                    ("from", from.to_string()),
                    ("limit", HISTORY_PAGE.to_string()),
                ],
            )?;
            events.extend(page.events);
            next = page.next.filter(|n| *n > from);
        }
        Ok(events)
    }

    fn waiting_on(&mut self, id: &str) -> Result<Vec<Value>, CliError> {
        let waiting: WaitingJson = self.get(&format!("{}/waiting", self.instance_url(id)), &[])?;
        Ok(waiting.waiting_on)
    }

    fn knows_event_waits(&self) -> bool {
        true
    }

    fn raise(
        &mut self,
        id: &str,
        name: &str,
        data: &RawValue,
        key: Option<&str>,
    ) -> Result<(), CliError> {
        let url = format!("{}/events/{}", self.instance_url(id), segment(name));
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        self.send("POST", &url, &[], Some(data.get()), &headers)?;
        Ok(())
    }

    fn terminate(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        self.reason("terminate", id, reason)
    }

    fn suspend(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        self.reason("suspend", id, reason)
    }

    fn resume(&mut self, id: &str, reason: &str) -> Result<(), CliError> {
        self.reason("resume", id, reason)
    }

    fn purge(&mut self, id: &str) -> Result<(), CliError> {
        self.send("DELETE", &self.instance_url(id), &[], None, &[])?;
        Ok(())
    }

    fn wait(&mut self, id: &str, timeout: Option<Duration>) -> Result<Option<Instance>, CliError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut pause = Duration::from_millis(50);
        loop {
            let status = self.status(id)?;
            if status.status.is_finished() {
                return Ok(Some(status));
            }
            let mut sleep = pause;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                sleep = sleep.min(left);
            }
            std::thread::sleep(sleep);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn close(self: Box<Self>) -> Result<(), CliError> {
        Ok(())
    }
}

/// A path segment with everything but unreserved characters escaped.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
