//! The entity dispatcher: takes the due messages of entities of the
//! registered types, applies each entity's operations in order, and commits
//! a whole round (every entity's new record, consumed messages, replies,
//! signals and started orchestrations) in one transaction. Entities keep no
//! history and never replay: their record is read with their messages.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::config::Config;
use crate::entity::{self, Record};
use crate::history::{self, EntityError, Event, Failure, FailureKind, RuntimeStatus};
use crate::mailbox::ToDispatcher;
use crate::policy::Poison;
use crate::registry::Registry;
use crate::shutdown::Shutdown;
use crate::store::handle::StoreHandle;
use crate::store::{InstanceWork, Names, StatusUpdate, StoreError, TurnCommit};

/// How long to wait after a store error before trying again.
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything the entity dispatcher uses.
pub(crate) struct EntityDispatcher {
    pub(crate) store: StoreHandle,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: Config,
    /// Woken when messages for entities were committed in this process.
    pub(crate) wake: Arc<Notify>,
    /// Wakes the orchestration dispatcher when replies went out.
    pub(crate) orchestrations: ToDispatcher,
    /// Set when the runtime begins to shut down: finish the round, stop.
    pub(crate) stop: Shutdown,
}

impl EntityDispatcher {
    /// Runs until the runtime shuts down; nothing to do when no entity type
    /// is registered.
    pub(crate) async fn run(mut self) {
        let names = self.registry.entity_names();
        if names.is_empty() {
            return;
        }
        let names: Vec<(&str, u32)> = names
            .iter()
            .map(|n| (n.as_str(), Names::ANY_VERSION))
            .collect();
        let mut failing = false;
        while !self.stop.is_set() {
            match self.round(&names).await {
                Ok(true) => {
                    failing = false;
                    continue;
                }
                Ok(false) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!("entity dispatcher: {e}; retrying until the store answers");
                    }
                    failing = true;
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        () = tokio::time::sleep(ERROR_BACKOFF) => {}
                        () = stop.wait() => {}
                    }
                    continue;
                }
            }
            // Idle: wait for a wake, a scheduled signal, or the poll.
            let due = self
                .store
                .call(|s, _| s.next_due())
                .await
                .ok()
                .and_then(|d| d.message);
            let wait = due.map_or(self.config.poll_interval, |d| {
                d.min(self.config.poll_interval)
            });
            let mut stop = self.stop.clone();
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = stop.wait() => {}
            }
        }
    }

    /// One round: fetch, apply, commit. `true` when it found work (look
    /// again at once).
    async fn round(&mut self, names: &[(&str, u32)]) -> Result<bool, StoreError> {
        let (lock, batch) = (self.config.instance_lock, self.config.batch);
        let names: Vec<(String, u32)> = names.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
        let work = self
            .store
            .call(move |s, owner| {
                let names: Vec<(&str, u32)> = names.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                s.fetch_work(owner, lock, batch, Names(&names))
            })
            .await?;
        if work.is_empty() {
            return Ok(false);
        }
        let now = self.config.clock.system_now();
        let mut commits = Vec::with_capacity(work.len());
        let mut stuck = Vec::new();
        for w in work {
            match self.turn(w, now) {
                Ok((commit, None)) => commits.push(commit),
                // What the turn got through commits, and the entity is set
                // aside with the rest still queued (it keeps its lock to
                // this process until then).
                Ok((commit, Some(failure))) => {
                    stuck.push((commit.instance.clone(), failure));
                    commits.push(commit);
                }
                Err((id, failure)) => stuck.push((id, failure)),
            }
        }
        let replies = commits
            .iter()
            .any(|c| c.sends.iter().any(|s| s.entity.is_none()) || !c.children.is_empty());
        let lease = self.config.activity_lease;
        if !commits.is_empty() {
            self.store
                .call(move |s, owner| s.commit_turns(owner, lease, &commits))
                .await?;
        }
        if replies {
            self.orchestrations.look();
        }
        let retry = self.config.stuck_retry;
        for (id, failure) in stuck {
            tracing::warn!(
                "entity `{}` is set aside: {failure}",
                crate::ids::Escaped(&id)
            );
            self.store
                .call(move |s, owner| s.mark_stuck(owner, &id, &failure, retry, true))
                .await?;
        }
        Ok(true)
    }

    /// One entity's turn, or why it is set aside (its record or state does
    /// not decode, its type is not registered here).
    fn turn(
        &self,
        w: InstanceWork,
        now: SystemTime,
    ) -> Result<(TurnCommit, Option<Failure>), (String, Failure)> {
        let set_aside = |kind, msg: String| (w.id.clone(), Failure::new(kind, msg));
        if let Some(damage) = &w.damage {
            return Err(set_aside(FailureKind::Corrupt, damage.to_string()));
        }
        let record: Record = match &w.output {
            None => Record::default(),
            Some(p) => p
                .decode("the record of an entity")
                .map_err(|e| set_aside(FailureKind::Corrupt, e.to_string()))?,
        };
        let Some(load) = self.registry.entity(&w.name) else {
            return Err(set_aside(
                FailureKind::UnregisteredEntity,
                format!(
                    "entity type `{}` is not registered with this runtime",
                    &w.name[1..]
                ),
            ));
        };
        let mut live = match load(&w.id, record.state.as_ref(), self.registry.max_payload) {
            Ok(live) => live,
            Err(EntityError::BadState(msg)) => {
                return Err(set_aside(
                    FailureKind::Payload,
                    format!(
                        "its stored state no longer decodes into its type (set aside, not reset: \
                         deploy code that reads it; its queued operations wait): {msg}"
                    ),
                ))
            }
            Err(e) => return Err(set_aside(FailureKind::Payload, e.to_string())),
        };
        let (mut consumed, mut messages): (Vec<u64>, Vec<Event>) = w.messages.into_iter().unzip();
        // A turn lost before (its process died in it) is taken again one
        // message at a time, so that an operation that kills the process
        // is found alone; after `poison_after` losses it is given up.
        let poison = Poison {
            after: self.config.poison_after,
        };
        if w.attempts > 1 {
            consumed.truncate(1);
            messages.truncate(1);
        }
        let why = format!(
            "its turn was lost {} times (the operation kills its process?)",
            w.attempts.saturating_sub(1)
        );
        let poisoned = poison.turn_is_poison(w.attempts).then_some(why.as_str());
        let turn = entity::run_turn(&w.id, record, messages, live.as_mut(), now, poisoned);
        tracing::trace!(
            entity = w.id.as_str(),
            applied = turn.applied,
            "entity turn"
        );
        let encoded = history::Payload::encode(&turn.record, "an entity's record", usize::MAX)
            .map_err(|e| set_aside(FailureKind::Payload, e.to_string()))?;
        let mut commit = TurnCommit::new(&w.id, w.history_len);
        commit.execution = w.execution;
        commit.entity_turn = true;
        consumed.truncate(turn.consumed);
        commit.consumed = consumed;
        let aside = turn.set_aside.map(|e| {
            commit.keep_lock = Some(self.config.instance_lock);
            Failure::new(
                FailureKind::Payload,
                format!(
                    "a queued signal cannot be applied by this code (set aside, nothing dropped: \
                     deploy code that takes it): {e}"
                ),
            )
        });
        commit.status = Some(StatusUpdate {
            output: Some(encoded),
            ..StatusUpdate::new(RuntimeStatus::Running, history::micros(now))
        });
        commit.sends = turn.sends;
        commit.children = turn.starts;
        Ok((commit, aside))
    }
}
