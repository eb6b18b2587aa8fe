//! Replay-safe logging: `durable::info!` and its siblings log from
//! orchestrator code once, while plain `tracing` events run again on every
//! replay; turn spans carry the instance, the orchestrator and the turn.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::{builder, db, within};
use durable::{activity, orchestrator, Context};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Counts events by message, and remembers the fields of `turn` spans.
#[derive(Default)]
struct Counter {
    next: AtomicU64,
    messages: Mutex<HashMap<String, u32>>,
    turn_spans: Mutex<Vec<String>>,
}

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?};", field.name(), value);
    }
}

static COUNTER: std::sync::OnceLock<&'static Counter> = std::sync::OnceLock::new();

impl Subscriber for &'static Counter {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        if span.metadata().name() == "turn" {
            let mut text = Text(String::new());
            span.record(&mut text);
            self.turn_spans.lock().unwrap().push(text.0);
        }
        Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        *self.messages.lock().unwrap().entry(text.0).or_default() += 1;
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Counter {
    fn count(&self, needle: &str) -> u32 {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m.contains(needle))
            .map(|(_, n)| *n)
            .sum()
    }
}

#[activity]
async fn step(x: u64) -> u64 {
    x + 1
}

#[orchestrator]
async fn logs(ctx: Context) -> u64 {
    durable::info!(ctx, "replay-safe first");
    tracing::info!("plain first");
    let a = ctx.call(step, 1).await.unwrap_or(0);
    durable::warn!(ctx, a, "replay-safe second");
    let b = ctx.call(step, a).await.unwrap_or(0);
    durable::info!(ctx, "replay-safe last");
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orchestrator_logs_are_emitted_once_across_replays() {
    let counter: &'static Counter = COUNTER.get_or_init(|| Box::leak(Box::default()));
    tracing::subscriber::set_global_default(counter).expect("the only subscriber");
    let db = db();
    // No live state cached: every turn replays the code before it.
    let rt = builder(&db)
        .activity(step)
        .orchestrator(logs)
        .cache_size(0)
        .start()
        .await
        .unwrap();
    let h = rt.client().start(logs, ()).await.unwrap();
    assert_eq!(within(h.result()).await.unwrap(), 3);
    rt.shutdown().await.unwrap();
    assert!(
        counter.count("plain first") >= 3,
        "plain tracing ran again on each replay"
    );
    assert_eq!(counter.count("replay-safe first"), 1);
    assert_eq!(counter.count("replay-safe second"), 1);
    assert_eq!(counter.count("replay-safe last"), 1);
    let spans = counter.turn_spans.lock().unwrap();
    assert!(
        spans.iter().any(|s| s.contains("instance=")
            && s.contains("orchestrator=logs")
            && s.contains("turn=2")),
        "turn spans carry instance, orchestrator and turn: {spans:?}"
    );
}
