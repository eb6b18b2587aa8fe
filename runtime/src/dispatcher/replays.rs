//! Replays in the background: rebuilding an instance from a long history
//! runs its code for every recorded turn, so it runs on a blocking thread
//! while the dispatcher goes on with everyone else's turns. What arrives in
//! memory for the instance meanwhile waits here, and is handed back with
//! the rebuilt execution.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::history::{Failure, FailureKind};
use crate::mailbox::Completed;
use crate::registry::Registry;
use crate::replay::{Execution, Parked};
use crate::store::handle::StoreHandle;
use crate::store::{InstanceWork, StoreError};

/// What a finished replay left: the execution, or why the instance cannot
/// run with this code.
pub(super) type Rebuilt = Result<Execution, Parked>;

/// The replays running, and what waits for each.
#[derive(Default)]
pub(super) struct Replays {
    running: JoinSet<(String, Result<Rebuilt, StoreError>)>,
    /// The work that asked for the replay (its messages, fetched or handed
    /// over) and the results that arrived in memory while the instance was
    /// being rebuilt.
    waiting: HashMap<String, (Option<InstanceWork>, Vec<Completed>)>,
    /// Finished replays, for the next turn of their instance.
    done: HashMap<String, Rebuilt>,
}

impl Replays {
    /// Whether `id` is being rebuilt now.
    pub(super) fn is_running(&self, id: &str) -> bool {
        self.waiting.contains_key(id)
    }

    /// Starts rebuilding `id` from its history.
    pub(super) fn start(&mut self, store: &StoreHandle, registry: &Arc<Registry>, id: &str) {
        let (store, registry, owned) = (store.clone(), Arc::clone(registry), id.to_owned());
        self.waiting.entry(owned.clone()).or_default();
        self.running.spawn(async move {
            let read = owned.clone();
            let rebuilt = match store.call(move |s, _| s.history(&read)).await {
                Ok(history) => {
                    let history = history.unwrap_or_default();
                    let id = owned.clone();
                    // Replay runs user code: off the async workers.
                    tokio::task::spawn_blocking(move || Execution::replay(&id, &history, &registry))
                        .await
                        .map_err(|e| {
                            Parked(Failure::new(
                                FailureKind::Panic,
                                format!("replay panicked: {e}"),
                            ))
                        })
                        .and_then(|r| r)
                }
                // A damaged history stops this instance, not the others.
                Err(e @ StoreError::Corrupt { .. }) => {
                    Err(Parked(Failure::new(FailureKind::Corrupt, e.to_string())))
                }
                Err(e) => return (owned, Err(e)),
            };
            (owned, Ok(rebuilt))
        });
    }

    /// Keeps the work for an instance being rebuilt: the latest messages
    /// (they are all still in the store) and every result.
    pub(super) fn hold(&mut self, id: &str, work: InstanceWork, completions: Vec<Completed>) {
        let w = self.waiting.entry(id.to_owned()).or_default();
        w.0 = Some(work);
        w.1.extend(completions);
    }

    /// The finished replay of `id`, if there is one.
    pub(super) fn take_done(&mut self, id: &str) -> Option<Rebuilt> {
        self.done.remove(id)
    }

    /// Whether any replay is running.
    pub(super) fn any_running(&self) -> bool {
        !self.running.is_empty()
    }

    /// Waits for the next replay to finish and files it; returns what
    /// waited for it, to run now.
    pub(super) async fn next(&mut self) -> (Vec<InstanceWork>, Vec<Completed>) {
        match self.running.join_next().await {
            Some(joined) => self.file(joined),
            None => std::future::pending().await,
        }
    }

    /// Files every replay finished by now; returns what waited for them,
    /// or `None` if none finished.
    pub(super) fn finished(&mut self) -> Option<(Vec<InstanceWork>, Vec<Completed>)> {
        let mut out: Option<(Vec<InstanceWork>, Vec<Completed>)> = None;
        while let Some(joined) = self.running.try_join_next() {
            let (w, c) = self.file(joined);
            let o = out.get_or_insert_with(Default::default);
            o.0.extend(w);
            o.1.extend(c);
        }
        out
    }

    fn file(
        &mut self,
        joined: Result<(String, Result<Rebuilt, StoreError>), tokio::task::JoinError>,
    ) -> (Vec<InstanceWork>, Vec<Completed>) {
        // The task itself never panics (the replay runs in its own task);
        // a join error is an abort at shutdown.
        let Ok((id, rebuilt)) = joined else {
            return (Vec::new(), Vec::new());
        };
        match rebuilt {
            Ok(r) => {
                self.done.insert(id.clone(), r);
            }
            // The store failed: the instance is looked at again later.
            Err(e) => tracing::warn!(
                "dispatcher: reading the history of `{}`: {e}",
                crate::ids::Escaped(&id)
            ),
        }
        let (work, completions) = self.waiting.remove(&id).unwrap_or_default();
        (work.into_iter().collect(), completions)
    }

    /// Everything still waiting (at shutdown).
    pub(super) fn drain_waiting(&mut self) -> Vec<Completed> {
        self.running.abort_all();
        self.waiting.drain().flat_map(|(_, (_, c))| c).collect()
    }
}
