//! The client: starts instances, raises events, terminates, and reads
//! statuses, histories and typed results.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::dispatcher::Inbound;
use crate::error::Error;
use crate::history::{now_micros, Event, HistoryRecord, Payload};
use crate::orchestrator::Orchestrator;
use crate::runtime::Shared;
use crate::status::{InstanceStatus, RuntimeStatus};
use crate::store::{Created, Enqueued, NewInstance};

/// Starts and inspects instances. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// A fresh random id (UUID-shaped): for instances and runtime owners.
pub(crate) fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut words = [0u64; 2];
    for w in &mut words {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    let [a, b] = words;
    uuid_v4(a, b)
}

/// Formats 128 random bits as a version-4 UUID (RFC 4122 variant).
pub(crate) fn uuid_v4(a: u64, b: u64) -> String {
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// The longest instance id or event name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

fn check_name(what: &'static str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::InvalidName {
            what,
            reason: "it is empty".to_owned(),
        });
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            what,
            reason: format!("it is {} bytes long, more than {MAX_NAME_LEN}", value.len()),
        });
    }
    Ok(())
}

impl Client {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts an instance of `orchestrator` under a generated id.
    ///
    /// # Errors
    /// [`Error::UnregisteredOrchestrator`], [`Error::Payload`] when the input
    /// does not encode, and store errors.
    pub async fn start<O: Orchestrator>(
        &self,
        orchestrator: O,
        input: O::Input,
    ) -> Result<Handle<O>, Error> {
        self.start_with_id(orchestrator, new_id(), input).await
    }

    /// Starts an instance of `orchestrator` under `id`.
    ///
    /// # Errors
    /// [`Error::InstanceExists`] when `id` is taken (whatever its state),
    /// [`Error::InvalidName`] for an empty or over-long id, and the errors of
    /// [`Client::start`].
    pub async fn start_with_id<O: Orchestrator>(
        &self,
        _orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> Result<Handle<O>, Error> {
        let id = id.into();
        check_name("instance id", &id)?;
        if !self.shared.registry.has_orchestrator(O::NAME) {
            return Err(Error::UnregisteredOrchestrator {
                name: O::NAME.to_owned(),
            });
        }
        let input = Payload::encode(
            &input,
            &format!("the input of orchestrator `{}`", O::NAME),
            self.shared.registry.max_payload,
        )?;
        let new = NewInstance {
            id: id.clone(),
            name: O::NAME.to_owned(),
            input,
            now: now_micros(),
        };
        let event = Event::Started {
            name: new.name.clone(),
            input: new.input.clone(),
        };
        match self
            .shared
            .blocking(move |s, _| s.create_instance(&new))
            .await?
        {
            Created::Created { message } => self.hand_over(&id, message, event),
            Created::Exists => return Err(Error::InstanceExists { id }),
        }
        Ok(self.handle(_orchestrator, id))
    }

    /// A typed handle to an existing instance, without touching the store.
    pub fn handle<O: Orchestrator>(&self, _orchestrator: O, id: impl Into<String>) -> Handle<O> {
        Handle {
            client: self.clone(),
            id: id.into(),
            _orchestrator: PhantomData,
        }
    }

    /// Delivers an external event to a running instance; it is kept until
    /// the orchestrator waits for `name`.
    ///
    /// Each call delivers one event: a call retried after an error that may
    /// have come after the commit (an I/O error, a lost connection) can
    /// deliver it twice. Use [`Client::raise_event_with_key`] to make retries
    /// safe.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InstanceFinished`],
    /// [`Error::InvalidName`] for an empty or over-long name,
    /// [`Error::Payload`] when `data` does not encode, and store errors.
    pub async fn raise_event<T: Serialize>(
        &self,
        id: &str,
        name: &str,
        data: T,
    ) -> Result<(), Error> {
        let event = Self::event(name, data, self.shared.registry.max_payload)?;
        self.enqueue(id, event, None).await
    }

    /// Delivers an external event at most once per `key` for this instance:
    /// calling it again with the same key (a retry after an error) is a
    /// no-op once the first call committed.
    ///
    /// # Errors
    /// As [`Client::raise_event`], and [`Error::InvalidName`] for an empty or
    /// over-long key.
    pub async fn raise_event_with_key<T: Serialize>(
        &self,
        id: &str,
        name: &str,
        key: &str,
        data: T,
    ) -> Result<(), Error> {
        check_name("event key", key)?;
        let event = Self::event(name, data, self.shared.registry.max_payload)?;
        self.enqueue(id, event, Some(key.to_owned())).await
    }

    fn event<T: Serialize>(name: &str, data: T, limit: usize) -> Result<Event, Error> {
        check_name("event name", name)?;
        Ok(Event::EventRaised {
            name: name.to_owned(),
            data: Payload::encode(&data, &format!("the data of event `{name}`"), limit)?,
        })
    }

    /// Ends a running instance at its next turn; its queued timers, events
    /// and not-yet-started activity calls are dropped (attempts already
    /// running finish, and their results are dropped).
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InstanceFinished`],
    /// [`Error::PayloadTooLarge`] for an over-long reason, and store errors.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        // The reason is stored like any payload, so it obeys the same limit.
        Payload::encode(
            reason,
            "the reason for terminating",
            self.shared.registry.max_payload,
        )?;
        let event = Event::Terminated {
            reason: reason.to_owned(),
        };
        self.enqueue(id, event, None).await
    }

    /// Gives the dispatcher a message just committed, sparing it a read.
    fn hand_over(&self, id: &str, message: i64, event: Event) {
        let sent = self.shared.inbox_tx.send(Inbound::Message {
            instance: id.to_owned(),
            id: message,
            event,
        });
        if sent.is_err() {
            // No dispatcher here: whoever runs next reads it from the store.
            self.shared.dispatcher_wake.notify_one();
        }
    }

    async fn enqueue(&self, id: &str, event: Event, key: Option<String>) -> Result<(), Error> {
        let owned = id.to_owned();
        let handed = event.clone();
        match self
            .shared
            .blocking(move |s, _| s.enqueue(&owned, &event, key.as_deref()))
            .await?
        {
            Enqueued::Queued { message } => {
                if let Some(message) = message {
                    self.hand_over(id, message, handed);
                }
                Ok(())
            }
            Enqueued::NotFound => Err(Error::InstanceNotFound { id: id.to_owned() }),
            Enqueued::Finished(status) => Err(Error::InstanceFinished {
                id: id.to_owned(),
                status,
            }),
        }
    }

    /// The instance's current status.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], and store errors.
    pub async fn status(&self, id: &str) -> Result<InstanceStatus, Error> {
        let owned = id.to_owned();
        self.shared
            .blocking(move |s, _| s.status(&owned))
            .await?
            .ok_or_else(|| Error::InstanceNotFound { id: id.to_owned() })
    }

    /// The instance's history, in order.
    ///
    /// # Errors
    /// Store errors (a history row that does not decode among them).
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, Error> {
        let owned = id.to_owned();
        Ok(self.shared.blocking(move |s, _| s.history(&owned)).await?)
    }

    /// Waits until the instance has finished and returns its final status.
    ///
    /// Finishing in this process wakes the wait at once; finishing in
    /// another process is seen within the poll interval.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::Shutdown`] when the runtime shuts
    /// down first, and store errors.
    pub async fn wait(&self, id: &str) -> Result<InstanceStatus, Error> {
        // The entry goes when this wait ends, however it ends (a caller's
        // timeout drops the future).
        let guard = WaiterGuard {
            shared: &self.shared,
            id,
            notify: self.shared.waiter(id),
        };
        self.wait_on(id, &guard.notify).await
    }

    async fn wait_on(
        &self,
        id: &str,
        notify: &tokio::sync::Notify,
    ) -> Result<InstanceStatus, Error> {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = self.status(id).await?;
            if status.runtime_status.is_finished() {
                return Ok(status);
            }
            if self.shared.is_shut_down() {
                return Err(Error::Shutdown);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(self.shared.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Forgets a waiter's registration when its wait ends.
struct WaiterGuard<'a> {
    shared: &'a Shared,
    id: &'a str,
    notify: Arc<tokio::sync::Notify>,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.shared.forget_waiter(self.id, &self.notify);
    }
}

/// A typed handle to one instance of `O`.
pub struct Handle<O> {
    client: Client,
    id: String,
    _orchestrator: PhantomData<fn() -> O>,
}

impl<O> Clone for Handle<O> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            id: self.id.clone(),
            _orchestrator: PhantomData,
        }
    }
}

impl<O> std::fmt::Debug for Handle<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("id", &self.id).finish()
    }
}

impl<O: Orchestrator> Handle<O> {
    /// The instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The instance's current status.
    ///
    /// # Errors
    /// As [`Client::status`].
    pub async fn status(&self) -> Result<InstanceStatus, Error> {
        self.client.status(&self.id).await
    }

    /// Waits for the instance to finish and returns exactly what the
    /// orchestrator returned, `Err` values included.
    ///
    /// # Errors
    /// [`Error::Failed`] (a panic, nondeterminism, ...), [`Error::Terminated`],
    /// [`Error::WrongOrchestrator`] when the id belongs to another
    /// orchestrator, [`Error::Payload`] when the output does not decode, and
    /// the errors of [`Client::wait`].
    pub async fn result(&self) -> Result<O::Output, Error> {
        let status = self.client.wait(&self.id).await?;
        if status.name != O::NAME {
            return Err(Error::WrongOrchestrator {
                id: self.id.clone(),
                expected: O::NAME.to_owned(),
                found: status.name,
            });
        }
        match (status.runtime_status, status.output, status.failure) {
            (RuntimeStatus::Terminated, _, _) => Err(Error::Terminated {
                id: self.id.clone(),
                reason: status.terminated.unwrap_or_default(),
            }),
            (_, Some(output), _) => output.decode(&format!("the output of instance `{}`", self.id)),
            (_, None, Some(failure)) => Err(Error::Failed {
                id: self.id.clone(),
                failure,
            }),
            (s, None, None) => Err(Error::Store(crate::error::StoreError::Corrupt {
                what: format!("instance `{}`", self.id),
                detail: format!("status {s} without an output or a failure"),
            })),
        }
    }
}
