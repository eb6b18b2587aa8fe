//! Human interaction: the manager's answer, an escalation to the director
//! when the manager is silent, and expiry when both are, on a real SQLite
//! file.

mod common;

use std::time::Duration;

use common::{builder, until, PATIENCE};
use durable_examples::approval::{
    self, approve, Decision, Request, APPROVAL, DIRECTOR, ESCALATED_APPROVAL, MANAGER,
};

fn request(manager_timeout: Duration, director_timeout: Duration) -> Request {
    Request {
        what: "a new laptop".to_owned(),
        manager_timeout,
        director_timeout,
    }
}

#[tokio::test]
async fn the_manager_answers_in_time() {
    let (_dir, builder) = builder();
    let rt = approval::register(builder).start().await.unwrap();
    let client = rt.client();
    let h = client
        .start(approve, request(PATIENCE, PATIENCE))
        .await
        .unwrap();
    client.raise_event(h.id(), APPROVAL, true).await.unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Decision::Approved {
            by: MANAGER.to_owned()
        }
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_silent_manager_escalates_to_the_director() {
    let (_dir, builder) = builder();
    let rt = approval::register(builder).start().await.unwrap();
    let client = rt.client();
    let h = client
        .start(approve, request(Duration::from_millis(10), PATIENCE))
        .await
        .unwrap();
    // The custom status says whose answer it waits for.
    until("the escalation", || async {
        let status = client.status(h.id()).await.unwrap();
        let waits_for = status.custom_status_as::<String>().unwrap()?;
        (waits_for == DIRECTOR).then_some(())
    })
    .await;
    client
        .raise_event(h.id(), ESCALATED_APPROVAL, false)
        .await
        .unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Decision::Rejected {
            by: DIRECTOR.to_owned()
        }
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn nobody_answering_expires_the_request() {
    let (_dir, builder) = builder();
    let rt = approval::register(builder).start().await.unwrap();
    let short = Duration::from_millis(10);
    let h = rt
        .client()
        .start(approve, request(short, short))
        .await
        .unwrap();
    assert_eq!(h.result_timeout(PATIENCE).await.unwrap(), Decision::Expired);
    rt.shutdown().await.unwrap();
}
