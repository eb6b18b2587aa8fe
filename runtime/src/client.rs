//! The client: starts instances, raises events, terminates, and reads
//! statuses, histories and typed results.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::history::{now_micros, Event, HistoryRecord, Payload, RuntimeStatus};
use crate::ids::{check_name, new_id, Escaped};
use crate::mailbox::{Handed, ToDispatcher};
use crate::orchestrator::Orchestrator;
use crate::registry::Registry;
use crate::shutdown::{Health, Shutdown};
use crate::status::InstanceStatus;
use crate::store::handle::StoreHandle;
use crate::store::{Created, Enqueued, NewInstance, StoreError};
use crate::waiters::Waiters;

pub use crate::ids::MAX_NAME_LEN;

/// Starts and inspects instances. Cheap to clone; usable from any task.
#[derive(Clone)]
pub struct Client {
    store: StoreHandle,
    registry: Arc<Registry>,
    dispatcher: ToDispatcher,
    waiters: Arc<Waiters>,
    health: Arc<Health>,
    shutdown: Shutdown,
    max_payload: usize,
    poll_interval: Duration,
    /// How long an instance this client hands over stays locked to it.
    instance_lock: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// The handles a client is built from.
pub(crate) struct ClientParts {
    pub(crate) store: StoreHandle,
    pub(crate) registry: Arc<Registry>,
    pub(crate) dispatcher: ToDispatcher,
    pub(crate) waiters: Arc<Waiters>,
    pub(crate) health: Arc<Health>,
    pub(crate) shutdown: Shutdown,
}

impl Client {
    pub(crate) fn new(parts: ClientParts, config: &Config) -> Self {
        Self {
            store: parts.store,
            registry: parts.registry,
            dispatcher: parts.dispatcher,
            waiters: parts.waiters,
            health: parts.health,
            shutdown: parts.shutdown,
            max_payload: config.max_payload,
            poll_interval: config.poll_interval,
            instance_lock: config.instance_lock,
        }
    }

    /// `Err` when the runtime can take no more work.
    fn accepting(&self) -> Result<(), Error> {
        Error::check_health(&self.health)?;
        if self.shutdown.is_set() {
            return Err(Error::Shutdown);
        }
        Ok(())
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
        let mut created = self.start_many::<O>(vec![(id.clone(), input)]).await?;
        match created.pop() {
            Some(true) => {}
            _ => return Err(Error::InstanceExists { id }),
        }
        Ok(self.handle(_orchestrator, id))
    }

    /// Starts many instances of `orchestrator` in one commit: for a caller
    /// that has them all at hand, far faster than one `start` after another.
    /// Returns a handle per input, in order; an id that exists already is
    /// not touched and is reported as [`Error::InstanceExists`] in its place.
    ///
    /// # Errors
    /// The errors of [`Client::start_with_id`] for the batch as a whole
    /// (nothing is written when one input is invalid), and store errors.
    pub async fn start_batch<O: Orchestrator>(
        &self,
        orchestrator: O,
        inputs: impl IntoIterator<Item = (String, O::Input)>,
    ) -> Result<Vec<Result<Handle<O>, Error>>, Error> {
        let inputs: Vec<(String, O::Input)> = inputs.into_iter().collect();
        let ids: Vec<String> = inputs.iter().map(|(id, _)| id.clone()).collect();
        let created = self.start_many::<O>(inputs).await?;
        Ok(ids
            .into_iter()
            .zip(created)
            .map(|(id, fresh)| {
                if fresh {
                    Ok(self.handle(orchestrator, id))
                } else {
                    Err(Error::InstanceExists { id })
                }
            })
            .collect())
    }

    /// Creates instances in one commit and hands their `Started` messages
    /// to the dispatcher; `true` for each one created.
    async fn start_many<O: Orchestrator>(
        &self,
        inputs: Vec<(String, O::Input)>,
    ) -> Result<Vec<bool>, Error> {
        self.accepting()?;
        if !self.registry.has_orchestrator(O::NAME) {
            return Err(Error::UnregisteredOrchestrator {
                name: O::NAME.to_owned(),
            });
        }
        let now = now_micros();
        let mut news = Vec::with_capacity(inputs.len());
        for (id, input) in inputs {
            check_name("instance id", &id)?;
            let input = Payload::encode(
                &input,
                &format!("the input of orchestrator `{}`", O::NAME),
                self.max_payload,
            )?;
            let mut new = NewInstance::new(id, O::NAME, input, now);
            // Random draws differ between instances and databases, and
            // replay the same: the seed is recorded in `Started`.
            new.seed = Some(crate::ids::random_u128().0);
            news.push(new);
        }
        // Room in the dispatcher's inbox first: a client faster than the
        // engine waits here, holding nothing but its own input.
        let mut rooms = Vec::with_capacity(news.len());
        for _ in &news {
            rooms.push(if rooms.is_empty() {
                self.dispatcher.room().await
            } else {
                self.dispatcher.room_now()
            });
        }
        // What is handed over is created locked to this process, so that no
        // other process runs its first turn too; the rest is any process's.
        let handed: Vec<bool> = rooms.iter().map(ToDispatcher::has_place).collect();
        let (mut batch, lock) = (news.clone(), self.instance_lock);
        let created = self
            .store
            .call(move |s, owner| {
                for (new, handed) in batch.iter_mut().zip(handed) {
                    if handed {
                        new.lock = Some((owner.to_owned(), lock));
                    }
                }
                s.create_instances(&batch)
            })
            .await?;
        let mut out = Vec::with_capacity(created.len());
        for ((new, created), room) in news.into_iter().zip(created).zip(rooms) {
            match created {
                Created::Created { message } => {
                    self.dispatcher.hand_over(
                        room,
                        Handed {
                            event: new.started(),
                            instance: new.id,
                            seq: message,
                        },
                    );
                    out.push(true);
                }
                _ => out.push(false),
            }
        }
        Ok(out)
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
        let event = Self::event(name, data, self.max_payload)?;
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
        let event = Self::event(name, data, self.max_payload)?;
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
    /// and activity calls are dropped (attempts already running finish, and
    /// their results are dropped). A stuck instance ends too, without its
    /// code running: the operator's way out of a parked instance.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InstanceFinished`],
    /// [`Error::PayloadTooLarge`] for an over-long reason, and store errors.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        // The reason is stored like any payload, so it obeys the same limit.
        Payload::encode(reason, "the reason for terminating", self.max_payload)?;
        let event = Event::Terminated {
            reason: reason.to_owned(),
        };
        self.enqueue(id, event, None).await
    }

    async fn enqueue(&self, id: &str, event: Event, key: Option<String>) -> Result<(), Error> {
        let wake_stuck = matches!(event, Event::Terminated { .. });
        self.accepting()?;
        check_name("instance id", id)?;
        let room = self.dispatcher.room().await;
        let owned = id.to_owned();
        let handed = event.clone();
        match self
            .store
            .call(move |s, _| s.enqueue(&owned, &event, key.as_deref(), wake_stuck))
            .await?
        {
            Enqueued::Queued { message } => {
                if let Some(seq) = message {
                    self.dispatcher.hand_over(
                        room,
                        Handed {
                            instance: id.to_owned(),
                            seq,
                            event: handed,
                        },
                    );
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
        self.store
            .call(move |s, _| s.status(&owned))
            .await?
            .ok_or_else(|| Error::InstanceNotFound { id: id.to_owned() })
    }

    /// The instance's history, in order.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], and store errors (a history row that
    /// does not decode among them).
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, Error> {
        let owned = id.to_owned();
        self.store
            .call(move |s, _| s.history(&owned))
            .await?
            .ok_or_else(|| Error::InstanceNotFound { id: id.to_owned() })
    }

    /// Waits until the instance has finished and returns its final status.
    ///
    /// Finishing in this process wakes the wait at once; finishing in
    /// another process is seen within the poll interval.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::Shutdown`] when the runtime shuts
    /// down first, [`Error::EngineFailed`] when it died, and store errors.
    pub async fn wait(&self, id: &str) -> Result<InstanceStatus, Error> {
        let waiting = self.waiters.wait_for(id);
        let mut shutdown = self.shutdown.clone();
        loop {
            let notified = waiting.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = self.status(id).await?;
            if status.runtime_status.is_finished() {
                return Ok(status);
            }
            Error::check_health(&self.health)?;
            if self.shutdown.is_set() {
                return Err(Error::Shutdown);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.wait() => {}
            }
        }
    }

    /// As [`Client::wait`], giving up after `timeout` (the instance goes on).
    ///
    /// # Errors
    /// [`Error::Timeout`] when it has not finished by then, and the errors
    /// of [`Client::wait`].
    pub async fn wait_timeout(&self, id: &str, timeout: Duration) -> Result<InstanceStatus, Error> {
        match tokio::time::timeout(timeout, self.wait(id)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                id: id.to_owned(),
                waited: timeout,
            }),
        }
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
        self.output_of(status)
    }

    /// As [`Handle::result`], giving up after `timeout` (the instance goes on).
    ///
    /// # Errors
    /// [`Error::Timeout`] when it has not finished by then, and the errors
    /// of [`Handle::result`].
    pub async fn result_timeout(&self, timeout: Duration) -> Result<O::Output, Error> {
        let status = self.client.wait_timeout(&self.id, timeout).await?;
        self.output_of(status)
    }

    fn output_of(&self, status: InstanceStatus) -> Result<O::Output, Error> {
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
            (_, Some(output), _) => {
                Ok(output.decode(&format!("the output of instance `{}`", Escaped(&self.id)))?)
            }
            (_, None, Some(failure)) => Err(Error::Failed {
                id: self.id.clone(),
                failure,
            }),
            (s, None, None) => Err(Error::Store(StoreError::Corrupt {
                what: format!("instance `{}`", Escaped(&self.id)),
                detail: format!("status {s} without an output or a failure"),
            })),
        }
    }
}

// Lives with the client, which reads statuses: `status` sits below the
// errors in the layers.
impl InstanceStatus {
    /// Decodes the return value as `T` (the orchestrator's return type):
    /// `Ok(None)` while there is no output (the instance has not returned).
    ///
    /// # Errors
    /// [`Error::Payload`] when the output is not a `T`.
    pub fn output<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        self.output
            .as_ref()
            .map(|p| {
                p.decode(&format!(
                    "the output of instance `{}`",
                    crate::ids::Escaped(&self.id)
                ))
                .map_err(Error::from)
            })
            .transpose()
    }
}
