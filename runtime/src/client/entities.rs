//! The client's side of entities: signal their operations, read their
//! state, list and purge them.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{transition, Client, Page, Query};
use crate::entity::{Entity, EntityId, Mode, Record};
use crate::error::Error;
use crate::history::{self, Event, Payload};
use crate::ids::check_name;
use crate::status::InstanceStatus;
use crate::store::{Outgoing, Transition};

/// What a client's signal resolves to: `Ok` once the operation is durably
/// queued for the entity.
pub type Signalled<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// One entity, seen from a client; see [`Client::entity`].
pub struct EntityRef<'a, T> {
    client: &'a Client,
    key: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EntityRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntityRef")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A client signalling an entity's operations; each resolves once the
/// operation is durably queued ([`Signalled`]).
#[derive(Debug)]
pub struct ClientSignal<'a> {
    client: &'a Client,
    /// The entity's instance id, or why the key was refused.
    id: Result<String, Error>,
    type_name: String,
    at: i64,
}

impl ClientSignal<'_> {
    /// Queues operation `op` with its encoded arguments.
    async fn queue(self, op: &str, input: Payload) -> Result<(), Error> {
        let id = self.id?;
        let client = self.client;
        client.accepting()?;
        if client.registry.entity(&self.type_name).is_none() {
            return Err(Error::UnregisteredEntity {
                name: self.type_name[1..].to_owned(),
            });
        }
        let event = Event::Operation {
            op: op.to_owned(),
            input,
            reply_to: None,
            holder: None,
        };
        let out = Outgoing::to_entity(id, self.type_name, event, self.at);
        client.store.call(move |s, _| s.send(&[out])).await?;
        client.dispatcher.wake_entities();
        Ok(())
    }
}

impl<'a> Mode for ClientSignal<'a> {
    type Out<R: DeserializeOwned + 'static> = Signalled<'a>;

    fn op<R: DeserializeOwned + 'static, A: Serialize>(
        self,
        op: &'static str,
        args: &A,
    ) -> Signalled<'a> {
        let encoded = Payload::encode(
            args,
            &format!("the arguments of entity operation `{op}`"),
            self.client.max_payload,
        );
        Box::pin(async move { self.queue(op, encoded?).await })
    }
}

impl<'a, T: Entity> EntityRef<'a, T> {
    fn checked_id(&self) -> Result<String, Error> {
        check_name("entity key", &self.key)?;
        Ok(history::entity_id(T::NAME, &self.key))
    }

    /// The entity's identity.
    pub fn id(&self) -> EntityId {
        EntityId::of::<T>(&self.key)
    }

    /// Signals its operations (one-way): `.signal().deposit(50).await?`
    /// resolves once the operation is durably queued; the entity applies
    /// it soon after, in the order signals were queued.
    pub fn signal(&self) -> T::Ops<ClientSignal<'a>> {
        self.signal_micros(0)
    }

    /// As [`EntityRef::signal`], applied not before `at`.
    pub fn signal_at(&self, at: SystemTime) -> T::Ops<ClientSignal<'a>> {
        self.signal_micros(history::micros(at))
    }

    fn signal_micros(&self, at: i64) -> T::Ops<ClientSignal<'a>> {
        T::Ops::from(ClientSignal {
            client: self.client,
            id: self.checked_id(),
            type_name: history::entity_type_name(T::NAME),
            at,
        })
    }

    /// Its state as last committed; `None` when it does not exist (never
    /// written, or deleted).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad key, [`Error::EntityState`] when
    /// the stored state no longer decodes into `T`, and store errors.
    pub async fn state(&self) -> Result<Option<T>, Error> {
        let id = self.checked_id()?;
        let found = self.client.store.call(move |s, _| s.status(&id)).await?;
        match found {
            None => Ok(None),
            Some(status) => state_of::<T>(&status),
        }
    }

    /// Deletes the entity and its row, when nothing is queued for it and no
    /// critical section holds it: for entities no longer used. `Ok(false)`
    /// when there was none.
    ///
    /// # Errors
    /// [`Error::InvalidState`] while operations are queued for it or it is
    /// locked, and store errors.
    pub async fn purge(&self) -> Result<bool, Error> {
        let id = self.checked_id()?;
        // Held in a critical section, or holding operations that wait for
        // one: not idle.
        let owned = id.clone();
        if let Some(status) = self.client.store.call(move |s, _| s.status(&owned)).await? {
            let record: Record = match &status.output {
                Some(p) => p
                    .decode("an entity's record")
                    .map_err(|e| Error::EntityState {
                        id: id.clone(),
                        reason: e.to_string(),
                    })?,
                None => Record::default(),
            };
            // A lock request given up on its way would lock it again once
            // it arrives: not idle either.
            if record.holder.is_some() || !record.deferred.is_empty() || !record.given_up.is_empty()
            {
                return Err(Error::InvalidState {
                    id,
                    status: status.runtime_status,
                    operation: "purge",
                });
            }
        }
        let owned = id.clone();
        match self.client.store.call(move |s, _| s.purge(&owned)).await? {
            Transition::NotFound => Ok(false),
            done => transition(&id, done, "purge").map(|()| true),
        }
    }
}

/// The state an entity's stored record holds.
fn state_of<T: Entity>(status: &InstanceStatus) -> Result<Option<T>, Error> {
    encoded_state_of(status)?
        .map(|p| {
            p.decode::<T>(&format!("the state of entity type `{}`", T::NAME))
                .map_err(|e| Error::EntityState {
                    id: status.id.clone(),
                    reason: e.to_string(),
                })
        })
        .transpose()
}

/// The encoded state an entity's stored record holds.
fn encoded_state_of(status: &InstanceStatus) -> Result<Option<Payload>, Error> {
    let Some(record) = &status.output else {
        return Ok(None);
    };
    let record: Record = record
        .decode("an entity's record")
        .map_err(|e| Error::EntityState {
            id: status.id.clone(),
            reason: e.to_string(),
        })?;
    Ok(record.state)
}

/// One page of [`Client::entities`].
#[derive(Debug)]
#[non_exhaustive]
pub struct EntityPage<T> {
    /// The entities that exist, by key, with their state.
    pub entities: Vec<(String, T)>,
    /// The token for the next page, or `None` on the last page.
    pub next: Option<String>,
}

impl Client {
    /// The entity of type `T` under `key`: signal its operations, read its
    /// state, purge it. A bad key is reported by each of those.
    ///
    /// ```no_run
    /// # use durable::{entity, Client};
    /// # use serde::{Deserialize, Serialize};
    /// #[derive(Default, Serialize, Deserialize)]
    /// struct Account { balance: i64 }
    ///
    /// #[entity]
    /// impl Account {
    ///     fn deposit(&mut self, amount: i64) { self.balance += amount; }
    /// }
    ///
    /// # async fn demo(client: Client) -> Result<(), durable::Error> {
    /// client.entity::<Account>("acct-7").signal().deposit(50).await?;
    /// let balance = client.entity::<Account>("acct-7").state().await?.map(|a| a.balance);
    /// # Ok(()) }
    /// ```
    pub fn entity<T: Entity>(&self, key: &str) -> EntityRef<'_, T> {
        EntityRef {
            client: self,
            key: key.to_owned(),
            _type: PhantomData,
        }
    }

    /// The state of the entity of the type stored as `entity` under `key`,
    /// as JSON, or `None` when it does not exist: for tools that know
    /// entity types by name (the HTTP API). The type need not be
    /// registered in this process.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad type name or key,
    /// [`Error::EntityState`] for a damaged record, and store errors.
    pub async fn entity_state_json(
        &self,
        entity: &str,
        key: &str,
    ) -> Result<Option<Payload>, Error> {
        check_name("entity type", entity)?;
        check_name("entity key", key)?;
        let id = history::entity_id(entity, key);
        match self.store.call(move |s, _| s.status(&id)).await? {
            None => Ok(None),
            Some(status) => encoded_state_of(&status),
        }
    }

    /// Signals operation `op` of the entity of the type stored as `entity`
    /// under `key`, with its arguments as JSON text (the operation's
    /// parameters as a tuple: `[5]` for one, `null` for none): for tools
    /// that know entity types by name. Resolves once the operation is
    /// durably queued.
    ///
    /// # Errors
    /// [`Error::UnregisteredEntity`] for a type not registered here,
    /// [`Error::BadOperation`] for an operation the type does not have, or
    /// arguments that do not decode into its parameters (nothing queued),
    /// [`Error::InvalidName`] for a bad key or operation name,
    /// [`Error::Payload`] for arguments that are not JSON,
    /// [`Error::PayloadTooLarge`], and store errors.
    pub async fn signal_json(
        &self,
        entity: &str,
        key: &str,
        op: &str,
        args: &str,
    ) -> Result<(), Error> {
        check_name("entity type", entity)?;
        check_name("entity operation", op)?;
        let input =
            self.json_payload(args, &format!("the arguments of entity operation `{op}`"))?;
        let type_name = history::entity_type_name(entity);
        // A bad operation would fail only when applied, and set the entity
        // aside with its queue: refused now, nothing queued.
        match self.registry.check_entity_op(&type_name, op, &input) {
            None => {
                return Err(Error::UnregisteredEntity {
                    name: entity.to_owned(),
                })
            }
            Some(Err(e)) => {
                return Err(Error::BadOperation {
                    entity: entity.to_owned(),
                    reason: e.to_string(),
                })
            }
            Some(Ok(())) => {}
        }
        let signal = ClientSignal {
            client: self,
            id: check_name("entity key", key)
                .map(|()| history::entity_id(entity, key))
                .map_err(Error::from),
            type_name,
            at: 0,
        };
        signal.queue(op, input).await
    }

    /// The entities of type `T` that exist, newest first, paged like
    /// [`Client::list`]: the query's id prefix applies to keys, its
    /// creation times to when each entity was first signalled; its status
    /// and orchestrator filters are ignored. A page may hold fewer entities
    /// than its size when some on it were deleted.
    ///
    /// # Errors
    /// [`Error::EntityState`] when a state no longer decodes into `T`,
    /// [`Error::InvalidToken`], and store errors.
    pub async fn entities<T: Entity>(&self, query: &Query) -> Result<EntityPage<T>, Error> {
        let mut q = query.clone();
        q.statuses = Vec::new();
        q.orchestrator = Some(history::entity_type_name(T::NAME));
        q.id_prefix = Some(history::entity_id(
            T::NAME,
            query.id_prefix.as_deref().unwrap_or(""),
        ));
        let Page { instances, next } = self.list(&q).await?;
        let mut entities = Vec::with_capacity(instances.len());
        for status in &instances {
            if let Some(state) = state_of::<T>(status)? {
                entities.push((crate::entity::key_of(&status.id).to_owned(), state));
            }
        }
        Ok(EntityPage { entities, next })
    }
}
