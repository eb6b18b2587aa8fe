//! The bank: concurrent transfers in both directions under critical
//! sections never lose or create money, never deadlock, and refuse
//! overdrafts without moving anything.

mod common;

use common::PATIENCE;
use durable_examples::bank::{self, audit, transfer, Account, Transfer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_keep_the_total_and_refuse_overdrafts() {
    let (_dir, builder) = common::builder();
    let rt = bank::register(builder).start().await.unwrap();
    let client = rt.client();
    let accounts = ["a", "b", "c"].map(str::to_owned);
    for a in &accounts {
        client
            .entity::<Account>(a)
            .signal()
            .deposit(1_000)
            .await
            .unwrap();
    }
    let (mut transfers, mut audits) = (Vec::new(), Vec::new());
    for i in 0..30_usize {
        // Opposite directions between the same pairs: a lock order per
        // transfer would deadlock; one global order does not.
        let (from, to) = if i % 2 == 0 {
            (i % 3, (i + 1) % 3)
        } else {
            ((i + 1) % 3, i % 3)
        };
        let t = Transfer {
            from: accounts[from].clone(),
            to: accounts[to].clone(),
            amount: 100 + (i as i64 * 37) % 600,
        };
        transfers.push(client.start(transfer, t).await.unwrap());
        if i % 10 == 0 {
            audits.push(client.start(audit, accounts.to_vec()).await.unwrap());
        }
    }
    // One transfer more than any account can hold: refused, nothing moves.
    let too_much = Transfer {
        from: "a".to_owned(),
        to: "b".to_owned(),
        amount: 1_000_000,
    };
    transfers.push(client.start(transfer, too_much).await.unwrap());
    let mut refused = 0;
    for h in transfers {
        if h.result_timeout(PATIENCE).await.unwrap().is_err() {
            refused += 1;
        }
    }
    assert!(refused >= 1, "the overdraft was refused");
    for h in audits {
        assert_eq!(h.result_timeout(PATIENCE).await.unwrap(), 3_000);
    }
    let mut total = 0;
    for a in &accounts {
        let balance = client
            .entity::<Account>(a)
            .state()
            .await
            .unwrap()
            .unwrap()
            .balance;
        assert!(balance >= 0, "{a} overdrawn: {balance}");
        total += balance;
    }
    assert_eq!(total, 3_000, "money was lost or created");
    rt.shutdown().await.unwrap();
}
