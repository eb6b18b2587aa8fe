//! The client: starts instances, raises events, terminates, and reads
//! statuses, histories and typed results.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::history::{Event, HistoryRecord, Payload, RuntimeStatus};
use crate::ids::{check_name, new_id, Escaped};
use crate::mailbox::{Handed, ToDispatcher};
use crate::orchestrator::Orchestrator;
use crate::registry::Registry;
use crate::shutdown::{Health, Shutdown};
use crate::status::InstanceStatus;
use crate::store::handle::StoreHandle;
use crate::store::{Created, Enqueued, ListQuery, NewInstance, StoreError, Transition};
use crate::waiters::Waiters;

pub use crate::ids::MAX_NAME_LEN;

mod entities;
pub use entities::{ClientSignal, EntityPage, EntityRef, Signalled};

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
    /// The runtime's clock.
    pub(crate) clock: crate::clock::Clock,
    metrics: Arc<crate::metrics::Recorder>,
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
            clock: config.clock.clone(),
            metrics: Arc::clone(&config.metrics),
        }
    }

    /// What this runtime has counted since it started: turns committed and
    /// refused, commit latency, and each activity's attempts, failures and
    /// run time (the HTTP API serves them to Prometheus at `/metrics`).
    pub fn metrics(&self) -> crate::metrics::Metrics {
        self.metrics.snapshot()
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
        orchestrator: O,
        id: impl Into<String>,
        input: O::Input,
    ) -> Result<Handle<O>, Error> {
        self.start_with(orchestrator, input, StartOptions::new().id(id))
            .await
    }

    /// Starts an instance of `orchestrator` as `options` say: under an id of
    /// the caller's choosing, at a later time (a scheduled start: the
    /// instance is `Pending` until then, and survives restarts), and with a
    /// policy for an id that exists ([`IfExists`]).
    ///
    /// ```no_run
    /// # use durable::{orchestrator, Context, IfExists, StartOptions};
    /// # use std::time::{Duration, SystemTime};
    /// # #[orchestrator] async fn report(_ctx: Context, day: u32) {}
    /// # async fn go(client: durable::Client) -> Result<(), durable::Error> {
    /// let tomorrow = SystemTime::now() + Duration::from_secs(86_400);
    /// let options = StartOptions::new()
    ///     .id("report-2026-12-01")
    ///     .at(tomorrow)
    ///     .if_exists(IfExists::UseExisting); // idempotent: a retry gets the same instance
    /// let handle = client.start_with(report, 335, options).await?;
    /// # let _ = handle;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InstanceExists`] when the id is taken and the policy does
    /// not allow it (or it belongs to another orchestrator), and the errors
    /// of [`Client::start`].
    pub async fn start_with<O: Orchestrator>(
        &self,
        orchestrator: O,
        input: O::Input,
        options: StartOptions,
    ) -> Result<Handle<O>, Error> {
        let id = options.id.clone().unwrap_or_else(new_id);
        let mut created = self
            .start_typed::<O>(vec![(id.clone(), input)], &options)
            .await?;
        if created.pop() == Some(true) {
            return Ok(self.handle(orchestrator, id));
        }
        if options.if_exists == IfExists::UseExisting {
            // The same orchestrator's instance is the one asked for.
            let existing = self.status(&id).await?;
            if existing.name == O::NAME {
                return Ok(self.handle(orchestrator, id));
            }
        }
        Err(Error::InstanceExists { id })
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
        let created = self
            .start_typed::<O>(inputs, &StartOptions::default())
            .await?;
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

    /// Starts the newest version registered here of the orchestrator
    /// stored as `name`, on `input` given as JSON text: for tools that know
    /// orchestrators by name (the HTTP API, scripts). The input is decoded
    /// into the orchestrator's input type first, so one that does not fit
    /// is refused, naming what does not fit, and nothing is written.
    /// Returns the instance's id.
    ///
    /// ```no_run
    /// # use durable::{orchestrator, Context, StartOptions};
    /// # #[orchestrator] async fn greet(_ctx: Context, name: String) -> String { name }
    /// # async fn go(client: durable::Client) -> Result<(), durable::Error> {
    /// let id = client
    ///     .start_json("greet", r#""Ada""#, StartOptions::new().id("greet-1"))
    ///     .await?;
    /// assert_eq!(id, "greet-1");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::UnregisteredOrchestrator`] for a name not registered here,
    /// [`Error::Payload`] for an input that is not JSON or does not decode
    /// into the input type, [`Error::PayloadTooLarge`], and the errors of
    /// [`Client::start_with`].
    pub async fn start_json(
        &self,
        name: &str,
        input: &str,
        options: StartOptions,
    ) -> Result<String, Error> {
        let Some((version, entry)) = self.registry.newest(name) else {
            return Err(Error::UnregisteredOrchestrator {
                name: name.to_owned(),
            });
        };
        let input = self.json_payload(input, &format!("the input of orchestrator `{name}`"))?;
        (entry.check_input)(&input)?;
        let id = options.id.clone().unwrap_or_else(new_id);
        let mut created = self
            .start_many(name, version, vec![(id.clone(), input)], &options)
            .await?;
        if created.pop() == Some(true) {
            return Ok(id);
        }
        if options.if_exists == IfExists::UseExisting && self.status(&id).await?.name == name {
            return Ok(id);
        }
        Err(Error::InstanceExists { id })
    }

    /// JSON text given by a tool as a payload: refused when it is not JSON
    /// or is over the payload limit.
    pub(crate) fn json_payload(&self, text: &str, what: &str) -> Result<Payload, Error> {
        let payload = Payload::from_json(text.to_owned()).map_err(|source| Error::Payload {
            what: format!("decoding {what}"),
            source,
        })?;
        if payload.json().len() > self.max_payload {
            return Err(Error::PayloadTooLarge {
                what: what.to_owned(),
                size: payload.json().len(),
                limit: self.max_payload,
            });
        }
        Ok(payload)
    }

    /// The work due now and not yet taken: the queue depth.
    ///
    /// # Errors
    /// Store errors.
    pub async fn backlog(&self) -> Result<crate::store::Backlog, Error> {
        Ok(self.store.call(|s, _| s.backlog()).await?)
    }

    /// How many instances there are in each status (entities not counted),
    /// of orchestrator `name` or of all; statuses with none are left out.
    ///
    /// # Errors
    /// Store errors.
    pub async fn counts(&self, name: Option<&str>) -> Result<Vec<(RuntimeStatus, u64)>, Error> {
        let name = name.map(str::to_owned);
        Ok(self
            .store
            .call(move |s, _| s.counts(name.as_deref()))
            .await?)
    }

    /// What the instance waits on, and why it is not moving: a scheduled
    /// start, a suspension (with its reason), a park on code that does not
    /// fit (with both call sites), the events its code waits for (with
    /// events that arrived under similar names), and every timer, activity,
    /// child, entity call and critical section still open, with its source
    /// line. Empty for a finished instance.
    ///
    /// The events waited for are found by replaying the history against
    /// this process's code: they are listed when its orchestrator is
    /// registered here, and left out otherwise.
    ///
    /// ```no_run
    /// # async fn go(client: durable::Client) -> Result<(), durable::Error> {
    /// for blocker in client.waiting_on("order-17").await? {
    ///     println!("{blocker}");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], and store errors.
    pub async fn waiting_on(&self, id: &str) -> Result<Vec<crate::Blocker>, Error> {
        let status = self.status(id).await?;
        if status.runtime_status.is_finished() {
            return Ok(Vec::new());
        }
        let history = self.history(id).await?;
        let owned = id.to_owned();
        let (queued, tasks, now) = self
            .store
            .call(move |s, _| {
                let queued = s.queued(std::slice::from_ref(&owned))?;
                Ok((queued, s.tasks_of(&owned)?, s.now()?))
            })
            .await?;
        let mut arrived: std::collections::BTreeSet<String> = queued
            .iter()
            .flat_map(|(_, messages)| messages.iter())
            .filter_map(|(_, e)| match e {
                Event::EventRaised { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let (mut awaited, mut abandoned) = (Vec::new(), Vec::new());
        let runs_here = history.first().is_some_and(|r| match &r.event {
            Event::Started { name, version, .. } => {
                self.registry.orchestrator(name, *version).is_some()
            }
            _ => false,
        });
        if runs_here && status.runtime_status != RuntimeStatus::Stuck {
            let (registry, owned, records) =
                (Arc::clone(&self.registry), id.to_owned(), history.clone());
            let replayed = tokio::task::spawn_blocking(move || {
                crate::replay::Execution::replay(&owned, &records, &registry).map(|e| e.waits())
            })
            .await;
            if let Ok(Ok((waits, untaken, dropped))) = replayed {
                awaited = waits;
                arrived.extend(untaken);
                abandoned = dropped;
            }
        }
        let mut blockers = crate::why::blockers(
            status.runtime_status,
            status.failure.as_ref(),
            &history,
            (&awaited, &arrived),
            (&tasks, now),
        );
        // A call that lost a race is in history with no result, and
        // nothing waits for it.
        blockers.retain(|b| !b.seq().is_some_and(|seq| abandoned.contains(&seq)));
        // A newer build's instance: this build's processes leave it alone.
        let started = history.first().map(|r| &r.event).into_iter().chain(
            queued
                .iter()
                .flat_map(|(_, messages)| messages.iter().map(|(_, e)| e)),
        );
        let version = started
            .filter_map(|e| match e {
                Event::Started { name, version, .. } => Some((name, *version)),
                _ => None,
            })
            .next();
        if let Some((name, version)) = version {
            if let Some((newest, _)) = self.registry.newest(name).filter(|(n, _)| *n < version) {
                blockers.insert(
                    0,
                    crate::Blocker::NewerVersion {
                        orchestrator: name.clone(),
                        version,
                        newest,
                    },
                );
            }
        }
        Ok(blockers)
    }

    /// The largest payload (input, output, event data), in bytes of JSON,
    /// this runtime accepts (`Builder::max_payload`).
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The stored names of the orchestrators registered here, sorted, each
    /// with the newest version registered.
    pub fn orchestrators(&self) -> Vec<(String, u32)> {
        self.registry
            .orchestrator_names()
            .into_iter()
            .filter_map(|n| self.registry.newest(n).map(|(v, _)| (n.to_owned(), v)))
            .collect()
    }

    /// The stored names of the entity types registered here, sorted.
    pub fn entity_types(&self) -> Vec<String> {
        self.registry
            .entity_names()
            .into_iter()
            .map(|n| n[crate::history::ENTITY_PREFIX.len_utf8()..].to_owned())
            .collect()
    }

    /// Encodes typed inputs and starts them (see [`Client::start_many`]).
    async fn start_typed<O: Orchestrator>(
        &self,
        inputs: Vec<(String, O::Input)>,
        options: &StartOptions,
    ) -> Result<Vec<bool>, Error> {
        let mut encoded = Vec::with_capacity(inputs.len());
        for (id, input) in inputs {
            let input = Payload::encode(
                &input,
                &format!("the input of orchestrator `{}`", O::NAME),
                self.max_payload,
            )?;
            encoded.push((id, input));
        }
        self.start_many(O::NAME, O::VERSION, encoded, options).await
    }

    /// Creates instances in one commit and hands their `Started` messages
    /// to the dispatcher; `true` for each one created.
    async fn start_many(
        &self,
        name: &str,
        version: u32,
        inputs: Vec<(String, Payload)>,
        options: &StartOptions,
    ) -> Result<Vec<bool>, Error> {
        self.accepting()?;
        if self.registry.orchestrator(name, version).is_none() {
            return Err(Error::UnregisteredOrchestrator {
                name: name.to_owned(),
            });
        }
        let now = self.clock.now();
        let mut news = Vec::with_capacity(inputs.len());
        for (id, input) in inputs {
            check_name("instance id", &id)?;
            let mut new = NewInstance::new(id, name, input, now);
            new.version = version;
            // Random draws differ between instances and databases, and
            // replay the same: the seed is recorded in `Started`.
            new.seed = Some(crate::ids::random_u128().0);
            new.visible_at = options.at.map_or(0, crate::history::micros);
            new.replace_finished = options.if_exists == IfExists::ReplaceFinished;
            news.push(new);
        }
        if options
            .at
            .is_some_and(|at| crate::history::micros(at) > self.clock.now())
        {
            // Not due yet: nothing to hand over; the dispatcher learns when
            // it falls due from the store.
            let batch = news.clone();
            let created = self
                .store
                .call(move |s, _| s.create_instances(&batch))
                .await?;
            self.dispatcher.look();
            return Ok(created
                .into_iter()
                .map(|c| matches!(c, Created::Created { .. }))
                .collect());
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
    /// [`Error::PayloadTooLarge`] for an over-long reason,
    /// [`Error::InvalidName`] for a reason holding a NUL character (a text
    /// column of PostgreSQL cannot hold it), and store errors.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        // The reason is stored like any payload, so it obeys the same limit.
        Payload::encode(reason, "the reason for terminating", self.max_payload)?;
        if reason.contains('\0') {
            return Err(crate::ids::NameError {
                what: "the reason for terminating",
                reason: "it contains a NUL character".to_owned(),
            }
            .into());
        }
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

    /// Suspends a live instance: it runs no turns, and keeps the events and
    /// activity results that arrive (its running activities finish) until
    /// [`Client::resume`]. `Suspended` with `reason` is recorded in its
    /// history. [`Client::terminate`] still ends it.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InvalidState`] when it is
    /// finished or suspended already, [`Error::PayloadTooLarge`] for an
    /// over-long reason, and store errors.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.set_suspended(id, true, reason).await
    }

    /// Resumes a suspended instance: what arrived meanwhile runs at once.
    /// `Resumed` with `reason` is recorded in its history.
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InvalidState`] when it is not
    /// suspended, [`Error::PayloadTooLarge`] for an over-long reason, and
    /// store errors.
    pub async fn resume(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.set_suspended(id, false, reason).await?;
        // What waited for it is in the store: look now.
        self.dispatcher.look();
        Ok(())
    }

    async fn set_suspended(&self, id: &str, suspend: bool, reason: &str) -> Result<(), Error> {
        self.accepting()?;
        check_name("instance id", id)?;
        Payload::encode(reason, "the reason", self.max_payload)?;
        let (owned, reason) = (id.to_owned(), reason.to_owned());
        let done = self
            .store
            .call(move |s, _| s.set_suspended(&owned, suspend, &reason))
            .await?;
        transition(id, done, if suspend { "suspend" } else { "resume" })
    }

    /// Deletes a finished instance and everything of it (history, status,
    /// anything still queued).
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], [`Error::InvalidState`] when it has not
    /// finished, and store errors.
    pub async fn purge(&self, id: &str) -> Result<(), Error> {
        check_name("instance id", id)?;
        let owned = id.to_owned();
        let done = self.store.call(move |s, _| s.purge(&owned)).await?;
        transition(id, done, "purge")
    }

    /// Deletes up to `limit` (at least 1) instances that finished before
    /// `before`, oldest first, and returns their ids: call it again while it
    /// returns `limit` ids. Bounded per call so that one call never holds the store long.
    ///
    /// # Errors
    /// Store errors.
    pub async fn purge_finished(
        &self,
        before: std::time::SystemTime,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let (before, limit) = (crate::history::micros(before), limit.max(1));
        Ok(self
            .store
            .call(move |s, _| s.purge_finished(before, limit))
            .await?)
    }

    /// One page of the instances `query` selects, newest first. The page's
    /// [`Page::next`] token asks for the page after it, and stays right
    /// while instances are created (they are newer, so they never shift a
    /// later page).
    ///
    /// # Errors
    /// [`Error::InvalidToken`] for a token no list returned, and store
    /// errors.
    pub async fn list(&self, query: &Query) -> Result<Page, Error> {
        let size = query.page_size.clamp(1, MAX_PAGE);
        let mut q = ListQuery {
            statuses: query.statuses.clone(),
            name: query.orchestrator.clone(),
            id_prefix: query.id_prefix.clone(),
            created_from: query.created_from.map(crate::history::micros),
            created_before: query.created_before.map(crate::history::micros),
            after: query.continuation.as_deref().map(parse_token).transpose()?,
            limit: size,
        };
        // One more than asked tells whether a next page exists.
        q.limit += 1;
        let mut instances = self.store.call(move |s, _| s.list(&q)).await?;
        let next = if instances.len() > size {
            instances.truncate(size);
            instances.last().map(token_of)
        } else {
            None
        };
        Ok(Page { instances, next })
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

    /// The instance's history as a stable JSON document: keep it as a test
    /// fixture and check new code against it with
    /// [`Builder::check_history`](crate::Builder::check_history).
    ///
    /// # Errors
    /// [`Error::InstanceNotFound`], and store errors.
    pub async fn export_history(&self, id: &str) -> Result<crate::history::HistoryExport, Error> {
        let events = self.history(id).await?;
        Ok(crate::history::HistoryExport::new(id, events))
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

    /// Up to `limit` events of the instance's history from index `from`, in
    /// order: a page of a long history, read without the rest (empty past
    /// its end; [`InstanceStatus`]'s `history_len` is the total).
    ///
    /// # Errors
    /// As [`Client::history`].
    pub async fn history_page(
        &self,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, Error> {
        let owned = id.to_owned();
        self.store
            .call(move |s, _| s.history_range(&owned, from, limit))
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

/// Which instances [`Client::list`] returns; every condition set must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Any of these statuses (empty: any).
    pub statuses: Vec<RuntimeStatus>,
    /// This orchestrator's stored name.
    pub orchestrator: Option<String>,
    /// Ids that start with this.
    pub id_prefix: Option<String>,
    /// Created at or after this time.
    pub created_from: Option<SystemTime>,
    /// Created before this time.
    pub created_before: Option<SystemTime>,
    /// How many per page (default 100; at most 10,000).
    pub page_size: usize,
    /// The [`Page::next`] of the page before, to get the page after it.
    pub continuation: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            orchestrator: None,
            id_prefix: None,
            created_from: None,
            created_before: None,
            page_size: 100,
            continuation: None,
        }
    }
}

impl Query {
    /// Every instance, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only instances in one of `statuses`.
    #[must_use]
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = RuntimeStatus>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Only instances of the orchestrator stored as `name`.
    #[must_use]
    pub fn orchestrator(mut self, name: impl Into<String>) -> Self {
        self.orchestrator = Some(name.into());
        self
    }

    /// Only instances whose id starts with `prefix`.
    #[must_use]
    pub fn id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.id_prefix = Some(prefix.into());
        self
    }

    /// Only instances created in `[from, before)`.
    #[must_use]
    pub fn created(mut self, from: Option<SystemTime>, before: Option<SystemTime>) -> Self {
        self.created_from = from;
        self.created_before = before;
        self
    }

    /// At most `n` per page.
    #[must_use]
    pub fn page_size(mut self, n: usize) -> Self {
        self.page_size = n;
        self
    }

    /// The page after the one whose [`Page::next`] this is.
    #[must_use]
    pub fn after(mut self, token: impl Into<String>) -> Self {
        self.continuation = Some(token.into());
        self
    }
}

/// One page of [`Client::list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page {
    /// The instances, newest first.
    pub instances: Vec<InstanceStatus>,
    /// The token for the next page (pass it to [`Query::after`]), or `None`
    /// on the last page.
    pub next: Option<String>,
}

/// The largest page [`Client::list`] returns.
const MAX_PAGE: usize = 10_000;

/// The continuation token after `last`: its creation time and id.
fn token_of(last: &InstanceStatus) -> String {
    format!("{}:{}", crate::history::micros(last.created_at), last.id)
}

fn parse_token(token: &str) -> Result<(i64, String), Error> {
    let bad = |reason: &str| Error::InvalidToken {
        reason: reason.to_owned(),
    };
    let (at, id) = token.split_once(':').ok_or_else(|| bad("no `:` in it"))?;
    let at = at.parse().map_err(|_| bad("its time is not a number"))?;
    Ok((at, id.to_owned()))
}

/// A store's answer to a command, as the client's result.
fn transition(id: &str, done: Transition, operation: &'static str) -> Result<(), Error> {
    match done {
        Transition::Done => Ok(()),
        Transition::NotFound => Err(Error::InstanceNotFound { id: id.to_owned() }),
        Transition::Refused(status) => Err(Error::InvalidState {
            id: id.to_owned(),
            status,
            operation,
        }),
    }
}

/// Reading a status's custom status: here, with the client's error type.
impl InstanceStatus {
    /// The value the orchestrator last set with
    /// [`Context::set_custom_status`](crate::Context::set_custom_status),
    /// decoded as `T`; `None` if it set none. It is kept across
    /// continue-as-new until set again.
    ///
    /// # Errors
    /// [`Error::Payload`] when it does not decode as `T`.
    pub fn custom_status_as<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        Ok(self
            .custom_status
            .as_ref()
            .map(|p| p.decode("the custom status"))
            .transpose()?)
    }
}

/// How [`Client::start_with`] starts an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartOptions {
    /// The instance id (default: a new UUID).
    pub id: Option<String>,
    /// When it starts (default: at once).
    pub at: Option<SystemTime>,
    /// What to do when the id is taken.
    pub if_exists: IfExists,
}

impl StartOptions {
    /// At once, under a new id, failing on a taken id (which a new one
    /// never is).
    pub fn new() -> Self {
        Self::default()
    }

    /// Under `id`.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// At `time` (a scheduled start); a time past starts at once.
    #[must_use]
    pub fn at(mut self, time: SystemTime) -> Self {
        self.at = Some(time);
        self
    }

    /// With `policy` for an id that is taken.
    #[must_use]
    pub fn if_exists(mut self, policy: IfExists) -> Self {
        self.if_exists = policy;
        self
    }
}

/// What [`Client::start_with`] does when the id belongs to an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IfExists {
    /// Fail with [`Error::InstanceExists`] (the default).
    #[default]
    Fail,
    /// Return a handle to the existing instance (of the same orchestrator):
    /// an idempotent start, safe to retry after an ambiguous error.
    UseExisting,
    /// Start afresh when the existing instance has finished (it is purged
    /// and the new one created in one commit); fail when it has not.
    ReplaceFinished,
}
