//! The orchestrators and activities a runtime knows, by stored name, with
//! their types erased to JSON payloads at the boundary.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crate::activity::{Activity, BoxFuture};
use crate::config::DEFAULT_MAX_PAYLOAD;
use crate::context::Context;
use crate::error::Error;
use crate::history::{ActivityFailure, Failure, FailureKind, Payload};
use crate::orchestrator::Orchestrator;
use crate::unwind::CatchUnwind;

/// An orchestrator's run: its encoded output and whether it is a failure.
pub(crate) type OrchestrationFuture = BoxFuture<Result<(Payload, bool), Failure>>;

/// Starts an orchestrator on its encoded input; outputs over the limit fail.
type StartFn =
    dyn Fn(Context, &Payload, usize) -> Result<OrchestrationFuture, Failure> + Send + Sync;
/// Runs one activity attempt on its encoded input; outputs over the limit fail.
type RunFn = dyn Fn(&Payload, usize) -> BoxFuture<Result<Payload, ActivityFailure>> + Send + Sync;

/// Loads one entity of a registered type for a turn.
/// Checks an entity operation's name and arguments before it is queued.
pub(crate) type CheckOpFn = fn(&str, &Payload) -> Result<(), crate::history::EntityError>;

pub(crate) type LoadFn = dyn Fn(
        &str,
        Option<&Payload>,
        usize,
    ) -> Result<Box<dyn crate::entity::Live>, crate::history::EntityError>
    + Send
    + Sync;

/// Checks that an encoded input decodes into an orchestrator's input type.
type CheckFn = dyn Fn(&Payload) -> Result<(), Error> + Send + Sync;

pub(crate) struct OrchestratorEntry {
    pub(crate) start: Box<StartFn>,
    pub(crate) check_input: Box<CheckFn>,
    pub(crate) activities: Vec<&'static str>,
    pub(crate) children: Vec<&'static str>,
    pub(crate) child_versions: Vec<(&'static str, u32)>,
}

/// What the runtime can run.
pub(crate) struct Registry {
    /// By stored name, then version.
    orchestrators: HashMap<&'static str, std::collections::BTreeMap<u32, OrchestratorEntry>>,
    activities: HashMap<&'static str, Arc<RunFn>>,
    /// Activities a test replaced by a closure: registering one of them
    /// again keeps the closure.
    overridden: std::collections::HashSet<&'static str>,
    /// Entity types, by stored name with its prefix (`@Account`).
    entities: HashMap<String, Box<LoadFn>>,
    /// By stored type name: checks an operation and its arguments.
    entity_checks: HashMap<String, CheckOpFn>,
    /// Names registered twice, reported when the runtime starts.
    duplicates: Vec<&'static str>,
    /// The largest payload, in bytes of JSON, anything may produce: set
    /// from the runtime's configuration when it starts.
    pub(crate) max_payload: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            orchestrators: HashMap::new(),
            activities: HashMap::new(),
            overridden: std::collections::HashSet::new(),
            entities: HashMap::new(),
            entity_checks: HashMap::new(),
            duplicates: Vec::new(),
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Registry {
    pub(crate) fn add_orchestrator<O: Orchestrator>(&mut self, orchestrator: O) {
        let start = move |ctx: Context, input: &Payload, limit: usize| {
            let input: O::Input = input
                .decode(&format!("the input of orchestrator `{}`", O::NAME))
                .map_err(|e| Failure::new(FailureKind::Payload, e.to_string()))?;
            let run = orchestrator.invoke(ctx, input);
            let fut: OrchestrationFuture = Box::pin(async move {
                let out = run.await;
                let failed = O::is_failure(&out);
                Payload::encode(
                    &out,
                    &format!("the output of orchestrator `{}`", O::NAME),
                    limit,
                )
                .map(|p| (p, failed))
                .map_err(|e| Failure::new(FailureKind::Payload, e.to_string()))
            });
            Ok(fut)
        };
        let check_input = |input: &Payload| {
            let mut json = serde_json::Deserializer::from_str(input.json());
            serde_path_to_error::deserialize::<_, O::Input>(&mut json)
                .map(drop)
                .map_err(|e| Error::Payload {
                    what: match e.path().to_string().as_str() {
                        "." => format!("decoding the input of orchestrator `{}`", O::NAME),
                        path => format!(
                            "decoding the input of orchestrator `{}` at `{path}`",
                            O::NAME
                        ),
                    },
                    source: e.into_inner(),
                })
        };
        let entry = OrchestratorEntry {
            start: Box::new(start),
            check_input: Box::new(check_input),
            activities: O::activities(),
            children: O::children(),
            child_versions: O::child_versions(),
        };
        if self
            .orchestrators
            .entry(O::NAME)
            .or_default()
            .insert(O::VERSION, entry)
            .is_some()
        {
            self.duplicates.push(O::NAME);
        }
    }

    pub(crate) fn add_activity<A: Activity>(&mut self, activity: A) {
        // A test's override wins whichever of the two was registered first.
        if self.overridden.contains(A::NAME) {
            return;
        }
        if self.activities.contains_key(A::NAME) {
            self.duplicates.push(A::NAME);
        }
        self.put_activity::<A>(move |input| activity.invoke(input));
    }

    /// Runs `f` in place of activity `A`'s body from now on (a test's
    /// override): typed like the activity, registered under its name.
    pub(crate) fn override_activity<A, F>(&mut self, f: F)
    where
        A: Activity,
        F: Fn(A::Input) -> BoxFuture<Result<A::Output, A::Error>> + Send + Sync + 'static,
    {
        self.overridden.insert(A::NAME);
        self.put_activity::<A>(f);
    }

    fn put_activity<A: Activity>(
        &mut self,
        invoke: impl Fn(A::Input) -> BoxFuture<Result<A::Output, A::Error>> + Send + Sync + 'static,
    ) {
        let run =
            move |input: &Payload, limit: usize| -> BoxFuture<Result<Payload, ActivityFailure>> {
                let input: A::Input =
                    match input.decode(&format!("the input of activity `{}`", A::NAME)) {
                        Ok(i) => i,
                        Err(e) => {
                            let msg = e.to_string();
                            return Box::pin(async move { Err(ActivityFailure::Aborted(msg)) });
                        }
                    };
                // Making the future runs user code too (an override's
                // closure): a panic there is a failed attempt as well.
                let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| invoke(input))) {
                    Ok(fut) => fut,
                    Err(panic) => {
                        let msg = crate::unwind::panic_message(panic.as_ref());
                        return Box::pin(async move { Err(ActivityFailure::Panic(msg)) });
                    }
                };
                Box::pin(async move {
                    // A panic is a failed attempt, not a dead worker.
                    match CatchUnwind::new(AssertUnwindSafe(fut)).await {
                        Ok(Ok(out)) => Payload::encode(
                            &out,
                            &format!("the output of activity `{}`", A::NAME),
                            limit,
                        )
                        .map_err(|e| ActivityFailure::Aborted(e.to_string())),
                        Ok(Err(err)) => {
                            let retryable = A::is_retryable(&err);
                            Err(Payload::encode(
                                &err,
                                &format!("the error of activity `{}`", A::NAME),
                                limit,
                            )
                            .map_or_else(
                                |e| ActivityFailure::Aborted(e.to_string()),
                                |p| {
                                    if retryable {
                                        ActivityFailure::Error(p)
                                    } else {
                                        ActivityFailure::Final(p)
                                    }
                                },
                            ))
                        }
                        Err(panic) => Err(ActivityFailure::Panic(panic)),
                    }
                })
            };
        self.activities.insert(A::NAME, Arc::new(run));
    }

    pub(crate) fn add_entity<T: crate::entity::Entity>(&mut self) {
        let name = crate::history::entity_type_name(T::NAME);
        self.entity_checks.insert(name.clone(), T::__check);
        if self
            .entities
            .insert(name, Box::new(crate::entity::load::<T>))
            .is_some()
        {
            self.duplicates.push(T::NAME);
        }
    }

    /// The loader of an entity type, by stored name with its prefix.
    pub(crate) fn entity(&self, type_name: &str) -> Option<&LoadFn> {
        self.entities.get(type_name).map(AsRef::as_ref)
    }

    /// Checks operation `op` of entity type `type_name` and its arguments
    /// (`None`: no such type registered).
    pub(crate) fn check_entity_op(
        &self,
        type_name: &str,
        op: &str,
        input: &Payload,
    ) -> Option<Result<(), crate::history::EntityError>> {
        self.entity_checks
            .get(type_name)
            .map(|check| check(op, input))
    }

    pub(crate) fn has_entity(&self, type_name: &str) -> bool {
        self.entities.contains_key(type_name)
    }

    /// The stored names (with their prefix) of the registered entity
    /// types, sorted.
    pub(crate) fn entity_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.entities.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// Checks the registrations: no name twice, every known callee present.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if let Some(name) = self.duplicates.first() {
            return Err(Error::DuplicateName {
                name: (*name).to_owned(),
            });
        }
        let mut names: Vec<_> = self
            .orchestrators
            .iter()
            .flat_map(|(n, versions)| versions.values().map(move |e| (n, e)))
            .collect();
        names.sort_by_key(|(n, _)| **n);
        for (name, entry) in names {
            if let Some(missing) = entry
                .children
                .iter()
                .find(|c| !self.orchestrators.contains_key(*c))
            {
                return Err(Error::UnregisteredChild {
                    orchestrator: (*name).to_owned(),
                    child: (*missing).to_owned(),
                });
            }
            if let Some((child, version)) = entry
                .child_versions
                .iter()
                .find(|(c, v)| self.orchestrator(c, *v).is_none())
            {
                return Err(Error::UnregisteredChild {
                    orchestrator: (*name).to_owned(),
                    child: format!("{child} (version {version})"),
                });
            }
            if let Some(missing) = entry
                .activities
                .iter()
                .find(|a| !self.activities.contains_key(*a))
            {
                return Err(Error::UnregisteredActivity {
                    orchestrator: (*name).to_owned(),
                    activity: (*missing).to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Version `version` of orchestrator `name`.
    pub(crate) fn orchestrator(&self, name: &str, version: u32) -> Option<&OrchestratorEntry> {
        self.orchestrators.get(name)?.get(&version)
    }

    /// The newest version of orchestrator `name` registered here.
    pub(crate) fn newest(&self, name: &str) -> Option<(u32, &OrchestratorEntry)> {
        self.orchestrators
            .get(name)?
            .iter()
            .next_back()
            .map(|(v, e)| (*v, e))
    }

    /// The versions of orchestrator `name` registered here, ascending.
    pub(crate) fn versions(&self, name: &str) -> Vec<u32> {
        self.orchestrators
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    pub(crate) fn has_orchestrator(&self, name: &str) -> bool {
        self.orchestrators.contains_key(name)
    }

    /// The activity's registered name and its runner.
    pub(crate) fn activity(&self, name: &str) -> Option<(&'static str, Arc<RunFn>)> {
        self.activities
            .get_key_value(name)
            .map(|(n, run)| (*n, Arc::clone(run)))
    }

    pub(crate) fn has_activity(&self, name: &str) -> bool {
        self.activities.contains_key(name)
    }

    /// The stored names of the registered orchestrators, sorted, each with
    /// the newest version registered: what the dispatcher fetches.
    pub(crate) fn orchestrator_versions(&self) -> Vec<(&'static str, u32)> {
        let mut names: Vec<_> = self
            .orchestrators
            .iter()
            .filter_map(|(name, versions)| Some((*name, *versions.keys().next_back()?)))
            .collect();
        names.sort_unstable();
        names
    }

    /// The stored names of the registered orchestrators, sorted.
    pub(crate) fn orchestrator_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.orchestrators.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// The stored names of the registered activities, sorted.
    pub(crate) fn activity_names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.activities.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
