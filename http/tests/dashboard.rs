//! The dashboard in a real headless Chromium (through chromedriver),
//! served by the HTTP server over a real runtime with real instances: the
//! list and its counts, filters kept in the URL, an instance's history,
//! source lines, what it waits for and its timeline, an action taken from
//! the page, live updates over SSE without a reload, an entity's page and
//! the comparison of two instances. Screenshots are kept under
//! `target/tmp/dashboard/` (checks read the DOM, never pixels).

mod webdriver;

use std::time::Duration;

use durable::{activity, entity, orchestrator, Context, Runtime, RuntimeStatus};
use durable_http::{serve, ApiOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webdriver::Browser;

#[activity]
async fn hello(name: String) -> String {
    format!("hello {name}")
}

#[activity]
async fn refuse(why: String) -> Result<String, String> {
    Err(why)
}

#[orchestrator]
async fn greet(ctx: Context, name: String) -> String {
    ctx.call(hello, name).await.unwrap_or_default()
}

/// Greets, then waits a day at most for `go`.
#[orchestrator]
async fn wait_go(ctx: Context, name: String) -> String {
    let greeting = ctx.call(hello, name).await.unwrap_or_default();
    match durable::select(
        ctx.wait_event::<String>("go"),
        ctx.sleep(Duration::from_secs(86_400)),
    )
    .await
    {
        durable::Either::Left(word) => format!("{greeting}, {word}"),
        durable::Either::Right(()) => "timed out".to_owned(),
    }
}

#[orchestrator]
async fn boom(ctx: Context, why: String) -> Result<String, String> {
    ctx.call(refuse, why).await.map_err(|e| e.to_string())
}

/// Takes one path or the other by its input.
#[orchestrator]
async fn branch(ctx: Context, x: i64) -> String {
    if x > 0 {
        ctx.call(hello, "positive".to_owned())
            .await
            .unwrap_or_default()
    } else {
        let _ = ctx.call(refuse, "negative".to_owned()).await;
        ctx.call(hello, "anyway".to_owned())
            .await
            .unwrap_or_default()
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[entity]
impl Counter {
    fn add(&mut self, n: i64) {
        self.total += n;
    }
}

#[test]
fn the_dashboard_lists_shows_steers_and_follows_instances_in_a_real_browser() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let (runtime, server) = rt.block_on(async {
        let runtime = Runtime::builder()
            .sqlite(dir.path().join("durable.db"))
            .activity(hello)
            .activity(refuse)
            .orchestrator(greet)
            .orchestrator(wait_go)
            .orchestrator(boom)
            .orchestrator(branch)
            .entity::<Counter>()
            .start()
            .await
            .expect("the runtime starts");
        let server = serve(
            runtime.client(),
            "127.0.0.1:0".parse().expect("an address"),
            ApiOptions::default(),
        )
        .await
        .expect("the server starts");
        (runtime, server)
    });
    let client = runtime.client();
    // The instances, each where the checks below expect it (a deadline, so
    // that a stuck setup fails the test instead of hanging it).
    let setup = async {
        for n in ["ada", "bob"] {
            let h = client.start(greet, n.to_owned()).await.unwrap();
            h.result().await.unwrap();
        }
        client
            .start_with_id(wait_go, "waits-a", "carol".to_owned())
            .await
            .unwrap();
        client
            .start_with_id(wait_go, "waits-b", "dave".to_owned())
            .await
            .unwrap();
        let b = client
            .start_with_id(boom, "boom-1", "no stock".to_owned())
            .await
            .unwrap();
        let _ = b.result().await;
        for (id, x) in [("path-up", 1), ("path-down", -1)] {
            let h = client.start_with_id(branch, id, x).await.unwrap();
            h.result().await.unwrap();
        }
        client
            .entity::<Counter>("k1")
            .signal()
            .add(5)
            .await
            .unwrap();
        // Both waiting instances have greeted and wait for `go`.
        for id in ["waits-a", "waits-b"] {
            loop {
                let h = client.history(id).await.unwrap();
                if h.iter()
                    .any(|r| matches!(r.event, durable::history::Event::TimerCreated { .. }))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        while client
            .entity::<Counter>("k1")
            .state()
            .await
            .unwrap()
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    rt.block_on(async {
        tokio::time::timeout(webdriver::PATIENCE, setup)
            .await
            .expect("the instances are set up in time");
    });
    let expected: Vec<(RuntimeStatus, u64)> = rt.block_on(client.counts(None)).unwrap();
    let url = format!("http://{}/ui/", server.local_addr());

    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let browser = Browser::start(shots);

    // The list, with a count per status that agrees with the store.
    browser.open(&format!("{url}#/"));
    let counts = browser.until(
        "the counts",
        "const c = [...document.querySelectorAll('[data-status-count]')];
         return c.length > 1 ? Object.fromEntries(c.map(e => [e.dataset.statusCount, +e.querySelector('b').textContent])) : null;",
    );
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    assert_eq!(counts["all"], json!(total), "{counts}");
    for (status, n) in &expected {
        let key = serde_json::to_value(status).unwrap();
        assert_eq!(counts[key.as_str().unwrap()], json!(n), "{counts}");
    }
    assert_eq!(counts["running"], json!(2), "{counts}");
    assert_eq!(counts["failed"], json!(1), "{counts}");
    let rows = browser.until(
        "the rows",
        &format!("const n = document.querySelectorAll('#instances tbody tr[data-id]').length; return n === {total} ? n : null;"),
    );
    assert_eq!(rows, json!(total));
    browser.screenshot("list");

    // A filter is kept in the URL: opening it shows only what it selects.
    browser.open(&format!("{url}#/?status=running"));
    let ids = browser.until(
        "the running instances",
        "const ids = [...document.querySelectorAll('#instances tbody tr[data-id]')].map(r => r.dataset.id).sort();
         return ids.length === 2 ? ids : null;",
    );
    assert_eq!(ids, json!(["waits-a", "waits-b"]));
    assert_eq!(
        browser.run("return document.getElementById('filter-status').value", &[]),
        json!("running")
    );

    // An instance: its history with source lines, what it waits for, its
    // timeline.
    let len = rt.block_on(client.history("waits-a")).unwrap().len();
    browser.open(&format!("{url}#/instances/waits-a"));
    browser.until(
        "the history",
        &format!("return document.querySelectorAll('#history .hrow[data-index]').length === {len} || null;"),
    );
    let sites = browser.run(
        "return [...document.querySelectorAll('#history .hrow[data-kind=ActivityScheduled] .site')].map(e => e.textContent)",
        &[],
    );
    assert!(
        sites[0]
            .as_str()
            .unwrap()
            .starts_with("http/tests/dashboard.rs:"),
        "{sites}"
    );
    let waits = browser.until(
        "what it waits for",
        "const w = [...document.querySelectorAll('#waiting li')].map(l => l.dataset.kind + ': ' + l.textContent);
         return w.length ? w : null;",
    );
    let waits = waits.to_string();
    assert!(
        waits.contains("event: ") && waits.contains("`go`"),
        "{waits}"
    );
    assert!(waits.contains("timer: "), "{waits}");
    browser.run("document.querySelector('[data-tab=timeline]').click()", &[]);
    let bars = browser.until(
        "the timeline",
        "const b = [...document.querySelectorAll('#timeline .tl-bar')].map(e => e.dataset.type + (e.classList.contains('open') ? ' open' : ''));
         return b.length ? b : null;",
    );
    assert_eq!(bars, json!(["activity", "timer open"]));
    browser.screenshot("instance-timeline");
    browser.run("document.querySelector('[data-tab=history]').click()", &[]);

    // An action from the page: raise `go` through the dialog.
    browser.run(
        "window.__marker = 42; document.getElementById('act-raise').click()",
        &[],
    );
    browser.until(
        "the dialog",
        "return document.getElementById('confirm').open || null",
    );
    browser.run(
        "document.getElementById('field-event').value = 'go';
         document.getElementById('field-data').value = '\"from the page\"';
         document.getElementById('confirm-ok').click();",
        &[],
    );
    let output = rt.block_on(async {
        let h = client.handle(wait_go, "waits-a");
        tokio::time::timeout(Duration::from_secs(60), h.result())
            .await
            .expect("the instance finishes")
            .unwrap()
    });
    assert_eq!(output, "hello carol, from the page");
    browser.until(
        "the page to show it completed",
        "const s = document.querySelector('#summary-status [data-status]');
         return (s && s.dataset.status === 'completed' && document.getElementById('output')) || null;",
    );
    assert_eq!(browser.run("return window.__marker", &[]), json!(42));
    browser.screenshot("instance-after-raise");

    // Live: a change made elsewhere reaches the open page over SSE, with
    // no reload (the page's marker survives).
    browser.open(&format!("{url}#/instances/waits-b"));
    let before = rt.block_on(client.history("waits-b")).unwrap().len();
    browser.until(
        "the history and the live stream",
        &format!("return (document.querySelectorAll('#history .hrow[data-index]').length === {before} && document.body.dataset.live === 'on') || null;"),
    );
    browser.run("window.__marker = 7", &[]);
    rt.block_on(client.raise_event("waits-b", "go", "from elsewhere"))
        .unwrap();
    let after = rt.block_on(async {
        let h = client.handle(wait_go, "waits-b");
        h.result().await.unwrap();
        client.history("waits-b").await.unwrap().len()
    });
    browser.until(
        "the new events on the open page",
        &format!(
            "const s = document.querySelector('#summary-status [data-status]');
                  return (document.querySelectorAll('#history .hrow[data-index]').length === {after}
                          && s && s.dataset.status === 'completed') || null;"
        ),
    );
    assert_eq!(browser.run("return window.__marker", &[]), json!(7));
    let kinds = browser.run(
        "return [...document.querySelectorAll('#history .hrow[data-index]')].map(r => r.dataset.kind)",
        &[],
    );
    assert_eq!(kinds.as_array().unwrap().last(), Some(&json!("Completed")));
    browser.screenshot("instance-live");

    // An entity's page shows its state.
    browser.open(&format!("{url}#/entities/Counter/k1"));
    let state = browser.until(
        "the entity's state",
        "const p = document.getElementById('entity-json'); return p && p.textContent.includes('total') ? p.textContent : null;",
    );
    let state: Value = serde_json::from_str(state.as_str().unwrap()).unwrap();
    assert_eq!(state, json!({ "total": 5 }));

    // Two instances of one orchestrator compared by sequence number.
    browser.open(&format!("{url}#/diff?a=path-up&b=path-down"));
    let summary = browser.until(
        "the comparison",
        "const s = document.getElementById('diff-summary'); return s ? s.textContent : null;",
    );
    assert_eq!(summary, json!("They part at #0."));
    let differs = browser.run(
        "return [...document.querySelectorAll('#diff tr.differs')].map(r => +r.dataset.seq)",
        &[],
    );
    assert_eq!(differs, json!([0, 1]));
    let shot = browser.screenshot("diff");
    println!("screenshots in {}", shot.parent().unwrap().display());

    drop(browser);
    rt.block_on(async {
        server.shutdown().await;
        runtime.shutdown().await.unwrap();
    });
}
