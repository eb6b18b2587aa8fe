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
