//! `GET /instances/{id}/stream`: an instance's history as server-sent
//! events, each with its index as the SSE `id`, so that a client that
//! reconnects with `Last-Event-ID` resumes after the last one it saw.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::Api;

/// How long the stream waits between looks at a quiet instance, at most.
const MAX_DELAY: Duration = Duration::from_secs(1);
/// How long it waits after something changed.
const MIN_DELAY: Duration = Duration::from_millis(50);
/// How many events one read takes: a long history is sent page by page.
const STREAM_PAGE: usize = 1_000;

#[derive(Debug, Deserialize)]
pub(crate) struct StreamParams {
    from: Option<u64>,
    /// The execution the client followed (the `first_seq` of the `Started`
    /// it saw): with `from` or `Last-Event-ID`, a continue-as-new since is
    /// seen, and the stream starts again at the new execution's start.
    execution: Option<u64>,
}

struct Follow {
    api: Arc<Api>,
    id: String,
    /// The index of the next event to send.
    next: u64,
    pending: VecDeque<Event>,
    done: bool,
    delay: Duration,
    /// The execution followed (the first sequence number of its
    /// `Started`): another one means the instance continued as new.
    execution: Option<u64>,
    /// The history length and update time last read: a change means new
    /// events, or a new execution.
    seen: Option<(u64, std::time::SystemTime)>,
}

pub(crate) async fn stream(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(params): Query<StreamParams>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // An unknown instance is a 404 now, not an empty stream.
    api.client.status(&id).await?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .and_then(|last| last.checked_add(1))
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID is not an event index"))?,
        ),
        None => None,
    };
    let next = resume.unwrap_or(params.from.unwrap_or(0));
    let follow = Follow {
        api,
        id,
        next,
        pending: VecDeque::new(),
        done: false,
        delay: MIN_DELAY,
        execution: params.execution,
        seen: None,
    };
    let events = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            f.look().await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

impl Follow {
    /// Queues what is new, or waits a while when nothing is.
    async fn look(&mut self) {
        let status = match self.api.client.status(&self.id).await {
            Ok(s) => s,
            Err(durable::Error::InstanceNotFound { .. }) => {
                self.end("purged");
                return;
            }
            Err(e) => {
                tracing::debug!(id = %self.id, error = %e, "the event stream looks again later");
                self.wait().await;
                return;
            }
        };
        let now_seen = Some((status.history_len, status.updated_at));
        if now_seen != self.seen {
            match self.read(status.history_len).await {
                Ok(true) => {
                    self.seen = now_seen;
                    self.delay = MIN_DELAY;
                }
                // More to read, or the instance moved on meanwhile.
                Ok(false) => self.delay = MIN_DELAY,
                Err(_) => self.wait().await,
            }
            return;
        }
        if status.runtime_status.is_finished() {
            let status = serde_json::to_value(status.runtime_status).unwrap_or_default();
            self.end(status.as_str().unwrap_or_default());
            return;
        }
        self.wait().await;
    }

    /// The execution now: the first sequence number of its `Started`.
    async fn execution(&self) -> Result<Option<u64>, durable::Error> {
        let first = self.api.client.history_page(&self.id, 0, 1).await?;
        Ok(first.first().and_then(|r| match &r.event {
            durable::history::Event::Started { first_seq, .. } => Some(*first_seq),
            _ => None,
        }))
    }

    /// Queues the next page of new events (`len`: the history's length
    /// just read); `true` once everything up to `len` was queued, or
    /// nothing more was there. Only the
    /// page is read, never the whole history: a page read while the
    /// instance continued as new is dropped (its execution changed under
    /// it) and read again.
    async fn read(&mut self, len: u64) -> Result<bool, durable::Error> {
        let execution = self.execution().await?;
        // Without the execution the client followed, only a history now
        // shorter than where it resumes tells a restart, and only when the
        // instance has continued as new at all (its execution is not the
        // first, numbered 0).
        let restarted = match self.execution {
            Some(followed) => execution.is_some_and(|now| now != followed),
            None => len < self.next && execution != Some(0),
        };
        if restarted {
            // Continued as new: the new execution's history starts again
            // at index 0.
            self.next = 0;
            self.pending
                .push_back(Event::default().event("restarted").data(""));
        }
        self.execution = execution.or(self.execution);
        let page = self
            .api
            .client
            .history_page(&self.id, self.next, STREAM_PAGE)
            .await?;
        if !page.is_empty() && self.execution().await? != execution {
            return Ok(false);
        }
        for record in &page {
            let event = Event::default()
                .id(record.index.to_string())
                .event("history")
                .json_data(record);
            if let Ok(event) = event {
                self.pending.push_back(event);
            }
            self.next = record.index + 1;
        }
        // An empty page: nothing more to read now, whatever the row says
        // (an entity counts its turns but keeps no history).
        Ok(page.is_empty() || self.next >= len)
    }

    fn end(&mut self, how: &str) {
        self.pending
            .push_back(Event::default().event("end").data(how));
        self.done = true;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }
}
