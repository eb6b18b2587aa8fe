//! Human interaction: a request waits for a manager's answer (an event)
//! against a durable timeout; when the manager does not answer in time it
//! is escalated to a director, with a timeout of its own. The custom status
//! says whose answer it waits for.

use std::time::Duration;

use durable::{activity, orchestrator, Context, Either};
use serde::{Deserialize, Serialize};

/// Who is asked first.
pub const MANAGER: &str = "manager";
/// Who is asked when the manager does not answer in time.
pub const DIRECTOR: &str = "director";
/// The event that carries the manager's answer (`true` approves).
pub const APPROVAL: &str = "approval";
/// The event that carries the director's answer (`true` approves).
pub const ESCALATED_APPROVAL: &str = "escalated_approval";

/// What needs approving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// What is asked for.
    pub what: String,
    /// How long the manager has to answer.
    pub manager_timeout: Duration,
    /// How long the director has to answer, once asked.
    pub director_timeout: Duration,
}

/// How the request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Approved by this approver.
    Approved {
        /// [`MANAGER`] or [`DIRECTOR`].
        by: String,
    },
    /// Rejected by this approver.
    Rejected {
        /// [`MANAGER`] or [`DIRECTOR`].
        by: String,
    },
    /// Nobody answered in time.
    Expired,
}

/// Sends an approver the request (simulated: printed).
#[activity]
pub async fn ask(approver: String, what: String) {
    println!("  activity: asking the {approver} to approve {what}");
}

/// Asks the manager, then, if no answer comes in time, the director.
#[orchestrator]
pub async fn approve(ctx: Context, request: Request) -> Decision {
    let levels = [
        (MANAGER, APPROVAL, request.manager_timeout),
        (DIRECTOR, ESCALATED_APPROVAL, request.director_timeout),
    ];
    for (approver, event, timeout) in levels {
        ctx.set_custom_status(approver);
        // A lost message is covered by the timeout: the next level is asked.
        let _ = ctx
            .call(ask, (approver.to_owned(), request.what.clone()))
            .await;
        // An answer that comes after the timeout stays unread.
        match durable::select(ctx.wait_event::<bool>(event), ctx.sleep(timeout)).await {
            Either::Left(true) => {
                return Decision::Approved {
                    by: approver.to_owned(),
                }
            }
            Either::Left(false) => {
                return Decision::Rejected {
                    by: approver.to_owned(),
                }
            }
            Either::Right(()) => {}
        }
    }
    Decision::Expired
}

/// Registers the workflow's orchestrator and activity.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder.activity(ask).orchestrator(approve)
}
