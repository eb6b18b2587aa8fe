//! Checking code against histories before it is deployed: one recorded
//! history (a test fixture), or every live instance in a database.

use std::sync::Arc;

use crate::error::Error;
use crate::history::{Event, Failure, FailureKind, HistoryExport, RuntimeStatus};
use crate::registry::Registry;
use crate::replay::Execution;
use crate::store::{ListQuery, Store};

/// An instance this build could not replay, and where it would diverge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Incompatible {
    /// The instance's id.
    pub instance: String,
    /// Its orchestrator's stored name.
    pub orchestrator: String,
    /// Its status in the database (empty for a fixture).
    pub status: Option<RuntimeStatus>,
    /// The first difference, naming the call site recorded and the one the
    /// code now makes (or the version that is not registered).
    pub failure: Failure,
}

impl std::fmt::Display for Incompatible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "instance `{}` of `{}`: {}",
            crate::ids::Escaped(&self.instance),
            self.orchestrator,
            self.failure
        )
    }
}

/// Replays `history` against `registry`'s code: `Err` with the first
/// difference. An export with no events checks nothing and is refused.
pub(crate) fn history(registry: &Registry, history: &HistoryExport) -> Result<(), Incompatible> {
    if history.events.is_empty() {
        return Err(Incompatible {
            instance: history.instance.clone(),
            orchestrator: history.orchestrator.clone(),
            status: None,
            failure: Failure::new(
                FailureKind::Corrupt,
                "the export holds no events, so it checks nothing (taken before the instance's \
                 first turn?): export the instance once it has run",
            ),
        });
    }
    Execution::check(&history.instance, &history.events, registry).map_err(|failure| Incompatible {
        instance: history.instance.clone(),
        orchestrator: history.orchestrator.clone(),
        status: None,
        failure,
    })
}

/// Every live instance of `store` (pending, running, suspended or stuck)
/// that `registry`'s code could not replay, in the store's list order.
/// Entities are not replayed and are left out.
pub(crate) fn database(
    registry: &Registry,
    store: &Arc<dyn Store>,
) -> Result<Vec<Incompatible>, Error> {
    let mut out = Vec::new();
    let mut query = ListQuery {
        statuses: vec![
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Suspended,
            RuntimeStatus::Stuck,
        ],
        limit: 500,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&query)?;
        for status in &page {
            let bad = |failure| Incompatible {
                instance: status.id.clone(),
                orchestrator: status.name.clone(),
                status: Some(status.runtime_status),
                failure,
            };
            // A damaged row stops only its own instance's check.
            let events = match store.history(&status.id) {
                Ok(events) => events.unwrap_or_default(),
                Err(e) => {
                    out.push(bad(Failure::new(FailureKind::Corrupt, e.to_string())));
                    continue;
                }
            };
            // Not run yet (a scheduled start, a child, an execution
            // continued as new, one suspended before its first turn):
            // nothing to replay, but the version its queued `Started`
            // names must be here.
            if events.is_empty() {
                let queued = match store.queued(std::slice::from_ref(&status.id)) {
                    Ok(queued) => queued,
                    Err(e) => {
                        out.push(bad(Failure::new(FailureKind::Corrupt, e.to_string())));
                        continue;
                    }
                };
                let started = queued
                    .iter()
                    .flat_map(|(_, m)| m)
                    .find_map(|(_, e)| match e {
                        Event::Started { name, version, .. } => Some((name.as_str(), *version)),
                        _ => None,
                    });
                let missing = match started {
                    Some((name, version)) => registry.orchestrator(name, version).is_none(),
                    // No start queued: at least its orchestrator must be here.
                    None => registry.versions(&status.name).is_empty(),
                };
                if missing {
                    let (name, version) = started.unwrap_or((&status.name, 1));
                    out.push(bad(crate::replay::unregistered(registry, name, version)));
                }
                continue;
            }
            let export = HistoryExport::new(status.id.clone(), events);
            if let Err(found) = history(registry, &export) {
                out.push(bad(found.failure));
            }
        }
        match page.last() {
            Some(last) if page.len() == query.limit => {
                query.after = Some((crate::history::micros(last.created_at), last.id.clone()));
            }
            _ => break,
        }
    }
    Ok(out)
}
