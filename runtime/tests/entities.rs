//! Durable entities: typed operations applied once each, in order, from
//! clients and orchestrators; reads, deletes, typed errors; critical
//! sections that keep a transfer's total constant.

mod common;

use std::time::Duration;

use common::{builder, db, until, within};
use durable::{entity, orchestrator, Context, EntityContext, EntityError, EntityId, Error};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Overdrawn {
    balance: i64,
    wanted: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    /// Every operation applied, in order: a duplicate or a reorder shows.
    log: Vec<i64>,
}

#[entity]
impl Account {
    fn deposit(&mut self, amount: i64) {
        self.balance += amount;
        self.log.push(amount);
    }

    fn withdraw(&mut self, amount: i64) -> Result<i64, Overdrawn> {
        if amount > self.balance {
            return Err(Overdrawn {
                balance: self.balance,
                wanted: amount,
            });
        }
        self.balance -= amount;
        self.log.push(-amount);
        Ok(self.balance)
    }

    fn balance(&self) -> i64 {
        self.balance
    }

    fn boom(&mut self, amount: i64) {
        self.balance += amount;
        panic!("boom after adding {amount}");
    }

    fn close(&mut self, ctx: &mut EntityContext) -> i64 {
        ctx.delete();
        self.balance
    }
}

#[orchestrator]
async fn banker(
    ctx: Context,
    key: String,
) -> (Result<i64, Overdrawn>, Result<i64, Overdrawn>, i64, String) {
    let acct = || ctx.entity::<Account>(&key);
    acct().signal().deposit(100);
    let ok = acct().withdraw(30).await.expect("the entity answers");
    let too_much = acct().withdraw(1_000).await.expect("the entity answers");
    let panicked = match acct().boom(5).await {
        Err(EntityError::Panicked(msg)) => msg,
        other => format!("not a panic: {other:?}"),
    };
    let balance = acct().balance().await.expect("the entity answers");
    (ok, too_much, balance, panicked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_calls_and_signals_with_typed_results_and_errors() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(banker)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(banker, "a".to_owned()).await.unwrap();
    let (ok, too_much, balance, panicked) = within(h.result()).await.unwrap();
    assert_eq!(ok, Ok(70));
    assert_eq!(
        too_much,
        Err(Overdrawn {
            balance: 70,
            wanted: 1_000
        })
    );
    // The panic rolled its operation back, and only it.
    assert_eq!(balance, 70);
    assert!(panicked.contains("boom after adding 5"), "{panicked}");
    let state = client
        .entity::<Account>("a")
        .state()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.log, vec![100, -30]);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_signals_apply_once_each_in_order_across_a_restart() {
    let db = db();
    let rt = builder(&db).entity::<Account>().start().await.unwrap();
    let client = rt.client();
    assert!(client
        .entity::<Account>("b")
        .state()
        .await
        .unwrap()
        .is_none());
    for i in 1..=50 {
        client
            .entity::<Account>("b")
            .signal()
            .deposit(i)
            .await
            .unwrap();
    }
    rt.shutdown().await.unwrap();
    let rt = builder(&db).entity::<Account>().start().await.unwrap();
    let client = rt.client();
    for i in 51..=100 {
        client
            .entity::<Account>("b")
            .signal()
            .deposit(i)
            .await
            .unwrap();
    }
    let state = until("every deposit applied", || async {
        client
            .entity::<Account>("b")
            .state()
            .await
            .unwrap()
            .filter(|a| a.log.len() == 100)
    })
    .await;
    assert_eq!(state.log, (1..=100).collect::<Vec<_>>());
    assert_eq!(state.balance, 5050);
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn closer(ctx: Context, key: String) -> i64 {
    ctx.entity::<Account>(&key).close().await.unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_deletes_its_entity_and_a_read_does_not_create_one() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(closer)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client
        .entity::<Account>("c")
        .signal()
        .deposit(9)
        .await
        .unwrap();
    let h = client.start(closer, "c".to_owned()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 9);
    assert!(client
        .entity::<Account>("c")
        .state()
        .await
        .unwrap()
        .is_none());
    // Nothing queued: the row goes too.
    assert!(client.entity::<Account>("c").purge().await.unwrap());
    assert!(!client.entity::<Account>("c").purge().await.unwrap());
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn transfer(ctx: Context, (from, to, amount): (String, String, i64)) -> bool {
    let lock = ctx
        .lock([EntityId::of::<Account>(&from), EntityId::of::<Account>(&to)])
        .await;
    let ok = match ctx.entity::<Account>(&from).withdraw(amount).await {
        Ok(Ok(_)) => {
            ctx.entity::<Account>(&to)
                .deposit(amount)
                .await
                .expect("a deposit answers");
            true
        }
        _ => false,
    };
    lock.release();
    ok
}

/// Reads both balances inside a critical section: a transfer half done
/// would show as a total off by its amount.
#[orchestrator]
async fn auditor(ctx: Context, keys: Vec<String>) -> i64 {
    let lock = ctx
        .lock(keys.iter().map(|k| EntityId::of::<Account>(k)))
        .await;
    let mut total = 0;
    for k in &keys {
        total += ctx
            .entity::<Account>(k)
            .balance()
            .await
            .unwrap_or(-1_000_000);
    }
    lock.release();
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_under_critical_sections_keep_the_total() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(transfer)
        .orchestrator(auditor)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let keys: Vec<String> = (0..4).map(|i| format!("acct-{i}")).collect();
    for k in &keys {
        client
            .entity::<Account>(k)
            .signal()
            .deposit(100)
            .await
            .unwrap();
    }
    let mut transfers = Vec::new();
    let mut audits = Vec::new();
    for i in 0..24 {
        let from = keys[i % 4].clone();
        let to = keys[(i * 3 + 1) % 4].clone();
        if from != to {
            let amount = 10 + (i as i64 % 7) * 10;
            transfers.push(client.start(transfer, (from, to, amount)).await.unwrap());
        }
        if i % 6 == 0 {
            audits.push(client.start(auditor, keys.clone()).await.unwrap());
        }
    }
    for t in transfers {
        within(t.result()).await.unwrap();
    }
    for a in audits {
        assert_eq!(
            within(a.result()).await.unwrap(),
            400,
            "an audit saw a transfer half done"
        );
    }
    let mut total = 0;
    for k in &keys {
        total += client
            .entity::<Account>(k)
            .state()
            .await
            .unwrap()
            .unwrap()
            .balance;
    }
    assert_eq!(total, 400);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_unregistered_types_are_typed_errors() {
    #[derive(Default, Serialize, Deserialize)]
    struct Stranger;
    #[entity]
    impl Stranger {
        fn poke(&mut self) {}
    }
    let db = db();
    let rt = builder(&db).entity::<Account>().start().await.unwrap();
    let client = rt.client();
    let err = client
        .entity::<Account>("")
        .signal()
        .deposit(1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    let long = "k".repeat(durable::MAX_NAME_LEN + 1);
    let err = client.entity::<Account>(&long).state().await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
    let err = client
        .entity::<Stranger>("s")
        .signal()
        .poke()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnregisteredEntity { ref name } if name == "Stranger"),
        "{err}"
    );
    let _ = Duration::ZERO;
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn holds_and_waits(ctx: Context, key: String) -> u64 {
    let _lock = ctx.lock([EntityId::of::<Account>(&key)]).await;
    ctx.wait_event::<u64>("never").await
}

#[orchestrator]
async fn holds_and_returns(ctx: Context, key: String) -> i64 {
    let _lock = ctx.lock([EntityId::of::<Account>(&key)]).await;
    ctx.entity::<Account>(&key).balance().await.unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_released_when_the_holder_is_terminated_or_returns() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(holds_and_waits)
        .orchestrator(holds_and_returns)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client
        .entity::<Account>("held")
        .signal()
        .deposit(1)
        .await
        .unwrap();
    let h = client
        .start(holds_and_waits, "held".to_owned())
        .await
        .unwrap();
    // Locked: the holder's history shows the grant.
    until("the lock to be granted", || async {
        let history = client.history(h.id()).await.unwrap();
        history
            .iter()
            .any(|r| matches!(r.event, durable::history::Event::LockGranted { .. }))
            .then_some(())
    })
    .await;
    client
        .entity::<Account>("held")
        .signal()
        .deposit(2)
        .await
        .unwrap();
    client.terminate(h.id(), "enough").await.unwrap();
    let state = until("the deferred deposit to be applied", || async {
        client
            .entity::<Account>("held")
            .state()
            .await
            .unwrap()
            .filter(|a| a.log.len() == 2)
    })
    .await;
    assert_eq!(state.log, vec![1, 2]);
    // A holder that returns without releasing lets go too.
    let h = client
        .start(holds_and_returns, "held".to_owned())
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 3);
    client
        .entity::<Account>("held")
        .signal()
        .deposit(4)
        .await
        .unwrap();
    until("a deposit after the holder returned", || async {
        client
            .entity::<Account>("held")
            .state()
            .await
            .unwrap()
            .filter(|a| a.log.len() == 3)
    })
    .await;
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn sends_in_order(ctx: Context, key: String) -> i64 {
    for i in 1..=10 {
        ctx.entity::<Account>(&key).signal().deposit(i);
    }
    ctx.sleep(Duration::from_millis(1)).await;
    for i in 11..=20 {
        ctx.entity::<Account>(&key).signal().deposit(i);
        ctx.sleep(Duration::from_millis(1)).await;
    }
    ctx.entity::<Account>(&key).balance().await.unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_senders_operations_apply_in_order_with_every_turn_replayed() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(sends_in_order)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client
        .start(sends_in_order, "ordered".to_owned())
        .await
        .unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 210);
    let state = client
        .entity::<Account>("ordered")
        .state()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.log, (1..=20).collect::<Vec<_>>());
    rt.shutdown().await.unwrap();
}

/// A ledger kept by time: its operations see when they ran.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Clock {
    ticks: Vec<(u64, u128)>,
}

#[entity]
impl Clock {
    fn tick(&mut self, ctx: &mut EntityContext, n: u64) {
        let at = ctx
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        self.ticks.push((n, at));
    }

    /// Passes a deposit on to an account and starts an orchestration.
    fn relay(&mut self, ctx: &mut EntityContext, n: i64) {
        ctx.signal::<Account>("relayed").deposit(n);
        ctx.start_with_id(closer, "started-by-an-entity", "relayed".to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_signals_wait_for_their_time_and_entities_signal_and_start_others() {
    let db = db();
    let rt = builder(&db)
        .entity::<Clock>()
        .entity::<Account>()
        .orchestrator(closer)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let at = std::time::SystemTime::now() + Duration::from_millis(300);
    client
        .entity::<Clock>("c")
        .signal_at(at)
        .tick(2)
        .await
        .unwrap();
    client.entity::<Clock>("c").signal().tick(1).await.unwrap();
    let state = until("both ticks", || async {
        client
            .entity::<Clock>("c")
            .state()
            .await
            .unwrap()
            .filter(|c| c.ticks.len() == 2)
    })
    .await;
    // The scheduled one came after the immediate one, not before its time.
    assert_eq!(state.ticks[0].0, 1);
    assert_eq!(state.ticks[1].0, 2);
    let due = at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros();
    assert!(state.ticks[1].1 >= due, "applied before its time");

    client.entity::<Clock>("c").signal().relay(5).await.unwrap();
    // The started orchestration closes the account the relay deposited to.
    let status = until("the orchestration the entity started", || async {
        client
            .status("started-by-an-entity")
            .await
            .ok()
            .filter(|s| s.runtime_status.is_finished())
    })
    .await;
    assert_eq!(status.output::<i64>().unwrap(), Some(5));
    rt.shutdown().await.unwrap();
}

#[orchestrator]
async fn calls_a_stranger(ctx: Context) -> u64 {
    #[derive(Default, Serialize, Deserialize)]
    struct Nobody;
    #[entity]
    impl Nobody {
        fn ping(&self) -> u64 {
            1
        }
    }
    ctx.entity::<Nobody>("n").ping().await.unwrap_or(0)
}

/// An account as another version of the code sees it: the same stored
/// type name, another argument type.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WrongAccount {
    balance: i64,
}

#[entity(name = "Account")]
impl WrongAccount {
    fn deposit(&mut self, amount: String) -> String {
        amount
    }
}

#[orchestrator]
async fn sends_bad_input(ctx: Context) -> String {
    match ctx
        .entity::<WrongAccount>("bad")
        .deposit("ten".to_owned())
        .await
    {
        Err(EntityError::BadInput(msg)) => msg,
        other => format!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_type_fails_the_caller_and_bad_arguments_are_refused() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(calls_a_stranger)
        .orchestrator(sends_bad_input)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(calls_a_stranger, ()).await.unwrap();
    let status = within(client.wait(h.id())).await.unwrap();
    let failure = status.failure.expect("it failed");
    assert_eq!(failure.kind, durable::FailureKind::UnregisteredEntity);
    assert!(failure.message.contains("Nobody"), "{failure}");

    let h = client.start(sends_bad_input, ()).await.unwrap();
    let msg = within(h.result()).await.unwrap();
    assert!(msg.contains("deposit"), "{msg}");
    // Nothing was applied, nothing created.
    assert!(client
        .entity::<Account>("bad")
        .state()
        .await
        .unwrap()
        .is_none());
    rt.shutdown().await.unwrap();
}

/// The account's state as a later version of the code would read it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Renamed {
    funds: u64,
}

#[entity(name = "Account")]
impl Renamed {
    fn deposit(&mut self, amount: i64) {
        self.funds += amount.unsigned_abs();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_no_longer_decodes_is_set_aside_not_reset() {
    let db = db();
    let rt = builder(&db).entity::<Account>().start().await.unwrap();
    let client = rt.client();
    client
        .entity::<Account>("old")
        .signal()
        .deposit(7)
        .await
        .unwrap();
    until("the deposit", || async {
        client.entity::<Account>("old").state().await.unwrap()
    })
    .await;
    rt.shutdown().await.unwrap();

    // A deploy whose type cannot read the stored state.
    let rt = builder(&db)
        .entity::<Renamed>()
        .stuck_retry(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let err = client.entity::<Renamed>("old").state().await.unwrap_err();
    assert!(matches!(err, Error::EntityState { .. }), "{err}");
    client
        .entity::<Renamed>("old")
        .signal()
        .deposit(1)
        .await
        .unwrap();
    until("the entity to be set aside", || async {
        client
            .status("@Account@old")
            .await
            .ok()
            .filter(|s| s.runtime_status == durable::RuntimeStatus::Stuck)
    })
    .await;
    rt.shutdown().await.unwrap();

    // The old code again: nothing was lost or reset, the signal applies.
    let rt = builder(&db)
        .entity::<Account>()
        .stuck_retry(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let state = until("the kept signal", || async {
        client
            .entity::<Account>("old")
            .state()
            .await
            .unwrap()
            .filter(|a| a.log.len() == 2)
    })
    .await;
    assert_eq!(state.log, vec![7, 1]);
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_lists_the_entities_of_a_type_paged() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .entity::<Clock>()
        .start()
        .await
        .unwrap();
    let client = rt.client();
    for i in 0..5 {
        client
            .entity::<Account>(&format!("list-{i}"))
            .signal()
            .deposit(i)
            .await
            .unwrap();
    }
    client
        .entity::<Account>("other")
        .signal()
        .deposit(9)
        .await
        .unwrap();
    client
        .entity::<Clock>("list-x")
        .signal()
        .tick(1)
        .await
        .unwrap();
    until("every deposit", || async {
        let page = client
            .entities::<Account>(&durable::Query::new().page_size(100))
            .await
            .unwrap();
        (page.entities.len() == 6).then_some(())
    })
    .await;
    let query = durable::Query::new().id_prefix("list-").page_size(3);
    let first = client.entities::<Account>(&query).await.unwrap();
    let token = first.next.clone().expect("a second page");
    let second = client
        .entities::<Account>(&query.clone().after(token))
        .await
        .unwrap();
    assert!(second.next.is_none());
    let mut keys: Vec<(String, i64)> = first
        .entities
        .into_iter()
        .chain(second.entities)
        .map(|(k, a)| (k, a.balance))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        (0..5).map(|i| (format!("list-{i}"), i)).collect::<Vec<_>>()
    );
    // Entities are not instances.
    let instances = client.list(&durable::Query::new()).await.unwrap();
    assert!(instances.instances.is_empty(), "{:?}", instances.instances);
    rt.shutdown().await.unwrap();
}

/// An entity whose operations name `Self`, and a type named `M` (the
/// proxy's own generic parameter is out of its way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct M {
    items: Vec<String>,
}

#[entity]
impl M {
    fn add(&mut self, item: String) -> Self {
        self.items.push(item);
        self.clone()
    }
}

#[orchestrator]
async fn uses_self(ctx: Context) -> M {
    ctx.entity::<M>("cart")
        .add("pen".to_owned())
        .await
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_may_return_self() {
    let db = db();
    let rt = builder(&db)
        .entity::<M>()
        .orchestrator(uses_self)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(uses_self, ()).await.unwrap();
    assert_eq!(
        within(h.result()).await.unwrap(),
        M {
            items: vec!["pen".to_owned()]
        }
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_the_code_cannot_take_sets_the_entity_aside_and_is_kept() {
    let db = db();
    // A deploy whose `deposit` takes a String: the queued i64 does not fit.
    let rt = builder(&db)
        .entity::<WrongAccount>()
        .stuck_retry(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let client = rt.client();
    client
        .entity::<Account>("kept")
        .signal()
        .deposit(5)
        .await
        .unwrap();
    until("the entity to be set aside", || async {
        client
            .status("@Account@kept")
            .await
            .ok()
            .filter(|s| s.runtime_status == durable::RuntimeStatus::Stuck)
    })
    .await;
    rt.shutdown().await.unwrap();
    // Code that takes it: the signal was kept and applies.
    let rt = builder(&db).entity::<Account>().start().await.unwrap();
    let client = rt.client();
    let state = until("the kept signal", || async {
        client.entity::<Account>("kept").state().await.unwrap()
    })
    .await;
    assert_eq!(state.log, vec![5]);
    rt.shutdown().await.unwrap();
}

/// Signals, locks and releases in the turn that continues as new.
#[orchestrator]
async fn rounds(ctx: Context, n: u32) -> u32 {
    ctx.entity::<Account>("rounds")
        .signal()
        .deposit(i64::from(n));
    let lock = ctx.lock([EntityId::of::<Account>("rounds")]).await;
    let _ = ctx.entity::<Account>("rounds").balance().await;
    lock.release();
    if n == 4 {
        return n;
    }
    ctx.continue_as_new(n + 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_and_releases_in_a_continue_as_new_turn_go_out() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(rounds)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let h = client.start(rounds, 1).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 4);
    let state = until("every round's deposit", || async {
        client
            .entity::<Account>("rounds")
            .state()
            .await
            .unwrap()
            .filter(|a| a.log.len() == 4)
    })
    .await;
    assert_eq!(state.log, vec![1, 2, 3, 4]);
    rt.shutdown().await.unwrap();
}

/// Gives up waiting for a lock after a while, then locks another entity.
#[orchestrator]
async fn impatient(ctx: Context) -> String {
    let first = durable::select(
        ctx.lock([EntityId::of::<Account>("busy")]),
        ctx.sleep(Duration::from_millis(50)),
    )
    .await;
    let gave_up = matches!(first, durable::Either::Right(()));
    let lock = ctx.lock([EntityId::of::<Account>("free")]).await;
    let b = ctx.entity::<Account>("free").balance().await.unwrap_or(-1);
    lock.release();
    format!("gave up {gave_up}, free {b}")
}

#[orchestrator]
async fn strays(ctx: Context) -> u64 {
    let _lock = ctx.lock([EntityId::of::<Account>("mine")]).await;
    // Calling an entity outside the section could deadlock: refused.
    let _ = ctx.entity::<Account>("theirs").balance().await;
    1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_abandoned_lets_go_and_calls_outside_a_section_are_refused() {
    let db = db();
    let rt = builder(&db)
        .entity::<Account>()
        .orchestrator(holds_and_waits)
        .orchestrator(impatient)
        .orchestrator(strays)
        .start()
        .await
        .unwrap();
    let client = rt.client();
    let holder = client
        .start(holds_and_waits, "busy".to_owned())
        .await
        .unwrap();
    until("the holder's lock", || async {
        let history = client.history(holder.id()).await.unwrap();
        history
            .iter()
            .any(|r| matches!(r.event, durable::history::Event::LockGranted { .. }))
            .then_some(())
    })
    .await;
    let h = client.start(impatient, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), "gave up true, free 0");
    // The holder goes; the abandoned request is granted and let go at once.
    client.terminate(holder.id(), "done").await.unwrap();
    client
        .entity::<Account>("busy")
        .signal()
        .deposit(3)
        .await
        .unwrap();
    until("the busy account to take signals again", || async {
        client
            .entity::<Account>("busy")
            .state()
            .await
            .unwrap()
            .filter(|a| a.balance == 3)
    })
    .await;
    let s = client.start(strays, ()).await.unwrap();
    let status = within(client.wait(s.id())).await.unwrap();
    let failure = status.failure.expect("refused");
    assert!(failure.message.contains("critical section"), "{failure}");
    rt.shutdown().await.unwrap();
}
