//! Human interaction on the test kit's virtual clock: the manager's answer,
//! an escalation to the director after three silent days, and expiry when
//! both are silent, with real timeouts in milliseconds of real time. On a
//! real SQLite file.

mod common;

use std::time::Duration;

use durable::testing::TestRuntime;
use durable_examples::approval::{
    self, approve, Decision, Request, APPROVAL, DIRECTOR, ESCALATED_APPROVAL, MANAGER,
};

const DAY: Duration = Duration::from_secs(86_400);

fn request() -> Request {
    Request {
        what: "a new laptop".to_owned(),
        manager_timeout: 3 * DAY,
        director_timeout: 2 * DAY,
    }
}

async fn test_runtime() -> (tempfile::TempDir, TestRuntime) {
    let (dir, builder) = common::builder();
    let test = TestRuntime::start(approval::register(builder))
        .await
        .unwrap();
    (dir, test)
}

#[tokio::test]
async fn the_manager_answers_in_time() {
    let (_dir, test) = test_runtime().await;
    let client = test.client();
    let h = client.start(approve, request()).await.unwrap();
    test.settle().await.unwrap();
    // Two days later, within the manager's three.
    test.advance(2 * DAY);
    client.raise_event(h.id(), APPROVAL, true).await.unwrap();
    assert_eq!(
        test.wait(&h).await.unwrap(),
        Decision::Approved {
            by: MANAGER.to_owned()
        }
    );
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_manager_escalates_to_the_director() {
    let (_dir, test) = test_runtime().await;
    let client = test.client();
    let h = client.start(approve, request()).await.unwrap();
    test.settle().await.unwrap();
    test.advance(3 * DAY);
    test.settle().await.unwrap();
    // The custom status says whose answer it waits for.
    let waits_for = client
        .status(h.id())
        .await
        .unwrap()
        .custom_status_as::<String>()
        .unwrap();
    assert_eq!(waits_for.as_deref(), Some(DIRECTOR));
    // The manager's late answer stays unread; the director's counts.
    client.raise_event(h.id(), APPROVAL, true).await.unwrap();
    client
        .raise_event(h.id(), ESCALATED_APPROVAL, false)
        .await
        .unwrap();
    assert_eq!(
        test.wait(&h).await.unwrap(),
        Decision::Rejected {
            by: DIRECTOR.to_owned()
        }
    );
    test.shutdown().await.unwrap();
}

#[tokio::test]
async fn nobody_answering_expires_the_request_after_five_days() {
    let (_dir, test) = test_runtime().await;
    let start = test.now();
    let h = test.client().start(approve, request()).await.unwrap();
    assert_eq!(test.wait(&h).await.unwrap(), Decision::Expired);
    assert_eq!(test.now().duration_since(start).unwrap(), 5 * DAY);
    test.shutdown().await.unwrap();
}
