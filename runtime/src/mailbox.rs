//! The mailboxes between the runtime's parts, all in memory and all
//! bounded: clients hand the dispatcher messages they just committed, the
//! dispatcher hands the worker tasks it leased for free slots, and the
//! worker hands results back. Each is a fast path only: what travels here
//! is in the store already (or its lease expires), so a full or closed
//! mailbox slows a caller down or sends work the long way, and loses nothing.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::history::Event;
use crate::store::{LeasedTask, TaskRef};

/// A message a client just committed (a start, an event), for the
/// dispatcher to take without a read of the store.
#[derive(Debug, Clone)]
pub(crate) struct Handed {
    pub(crate) instance: String,
    /// The message's per-instance sequence number.
    pub(crate) seq: u64,
    pub(crate) event: Event,
}

/// An activity result handed over by this process's worker, not yet in the
/// store: the turn that consumes it deletes its task.
#[derive(Debug, Clone)]
pub(crate) struct Completed {
    pub(crate) task: TaskRef,
    pub(crate) instance: String,
    pub(crate) event: Event,
}

/// A task leased to this process with a free slot of its worker.
pub(crate) struct Assigned {
    pub(crate) task: LeasedTask,
    /// The worker slot it runs in, given back when the attempt ends.
    pub(crate) slot: OwnedSemaphorePermit,
}

/// The client's side of the dispatcher's inbox.
#[derive(Clone)]
pub(crate) struct ToDispatcher {
    messages: mpsc::Sender<Handed>,
    wake: Arc<Notify>,
    entities: Arc<Notify>,
}

/// Room for one message in the dispatcher's inbox, taken before the
/// message is committed so that a busy engine slows its clients down.
pub(crate) struct Room(Option<mpsc::OwnedPermit<Handed>>);

impl ToDispatcher {
    /// Waits for room in the inbox. `None` when the dispatcher is gone:
    /// the caller then commits and only wakes whoever reads the store.
    pub(crate) async fn room(&self) -> Room {
        Room(self.messages.clone().reserve_owned().await.ok())
    }

    /// Room if there is some now, without waiting.
    pub(crate) fn room_now(&self) -> Room {
        match self.messages.clone().try_reserve_owned() {
            Ok(p) => Room(Some(p)),
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => Room(None),
        }
    }

    /// Tells the dispatcher to look in the store (for work committed there
    /// without a hand-over).
    pub(crate) fn look(&self) {
        self.wake.notify_one();
    }

    /// Wakes the entity dispatcher: messages for entities are in the store.
    pub(crate) fn wake_entities(&self) {
        self.entities.notify_one();
    }

    /// Whether `room` holds a place (the message will be handed over).
    pub(crate) fn has_place(room: &Room) -> bool {
        room.0.is_some()
    }

    /// Hands a committed message over through `room`, or, without room,
    /// tells the dispatcher to look in the store.
    pub(crate) fn hand_over(&self, room: Room, message: Handed) {
        match room.0 {
            Some(permit) => {
                permit.send(message);
            }
            None => self.wake.notify_one(),
        }
    }
}

/// The dispatcher's side of its inbox.
pub(crate) struct Inbox {
    pub(crate) messages: mpsc::Receiver<Handed>,
    pub(crate) completions: mpsc::UnboundedReceiver<Completed>,
    pub(crate) wake: Arc<Notify>,
    /// Wakes the entity dispatcher.
    pub(crate) entities: Arc<Notify>,
}

/// The worker's ends: tasks in, results out, settled leases back.
pub(crate) struct WorkerEnds {
    pub(crate) tasks: mpsc::UnboundedReceiver<Assigned>,
    /// Tasks were queued in the store without a lease: look.
    pub(crate) wake: Arc<Notify>,
    pub(crate) results: mpsc::UnboundedSender<Completed>,
    pub(crate) settled: mpsc::UnboundedReceiver<TaskRef>,
    pub(crate) slots: Arc<Semaphore>,
}

/// The dispatcher's handles on its worker: free slots, tasks out, settled
/// results back (so the worker stops renewing their leases).
pub(crate) struct ToWorker {
    pub(crate) tasks: mpsc::UnboundedSender<Assigned>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) settled: mpsc::UnboundedSender<TaskRef>,
    pub(crate) slots: Arc<Semaphore>,
}

impl ToWorker {
    /// Takes up to `n` free worker slots, without waiting.
    pub(crate) fn take_slots(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut out = Vec::new();
        while out.len() < n {
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(p) => out.push(p),
                Err(_) => break,
            }
        }
        out
    }

    /// Tells the worker that the turn consuming these results committed
    /// (or they went to the store): their leases need no renewing.
    pub(crate) fn settle(&self, tasks: impl IntoIterator<Item = TaskRef>) {
        for t in tasks {
            // No worker: nothing renews anyway.
            let _ = self.settled.send(t);
        }
    }
}

/// Every mailbox, before the runtime hands each part its ends.
pub(crate) struct Mailboxes {
    pub(crate) to_dispatcher: ToDispatcher,
    pub(crate) inbox: Inbox,
    pub(crate) to_worker: ToWorker,
    pub(crate) worker: WorkerEnds,
}

/// Makes the mailboxes: an inbox of `inbox_capacity` messages and a worker
/// with `slots` slots.
pub(crate) fn mailboxes(inbox_capacity: usize, slots: usize) -> Mailboxes {
    let (msg_tx, msg_rx) = mpsc::channel(inbox_capacity.max(1));
    // Results and tasks are bounded by the worker's slots, not the channel.
    let (res_tx, res_rx) = mpsc::unbounded_channel();
    let (task_tx, task_rx) = mpsc::unbounded_channel();
    let (settled_tx, settled_rx) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let worker_wake = Arc::new(Notify::new());
    let entities = Arc::new(Notify::new());
    let slots = Arc::new(Semaphore::new(slots));
    Mailboxes {
        to_dispatcher: ToDispatcher {
            messages: msg_tx,
            wake: Arc::clone(&wake),
            entities: Arc::clone(&entities),
        },
        inbox: Inbox {
            messages: msg_rx,
            completions: res_rx,
            wake,
            entities,
        },
        to_worker: ToWorker {
            tasks: task_tx,
            wake: Arc::clone(&worker_wake),
            settled: settled_tx,
            slots: Arc::clone(&slots),
        },
        worker: WorkerEnds {
            tasks: task_rx,
            wake: worker_wake,
            results: res_tx,
            settled: settled_rx,
            slots,
        },
    }
}
