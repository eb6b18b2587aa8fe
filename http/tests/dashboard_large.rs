//! An instance with a long history (50,000 side effects, so 50,002
//! events, made through the real runtime on a real SQLite file) on the
//! dashboard in a real headless Chromium: the page shows the history soon,
//! with its total, keeps only a screenful of rows in the DOM, and shows
//! the rows of the middle and of the end when scrolled there. Checks read
//! the DOM; the screenshots go to `target/tmp/dashboard/` as the other
//! dashboard test's do.
//!
//! It prints what it measured (how long the page takes to show the
//! history, how long the history route takes to serve its pages) without
//! asserting on it: the machines it runs on are shared. See them with
//! `cargo test -p durable-http --test dashboard_large -- --nocapture`.

mod webdriver;

use std::time::{Duration, Instant};

use durable::{orchestrator, Context, Runtime};
use durable_http::{serve, ApiOptions};
use serde_json::{json, Value};
use webdriver::Browser;

/// Side effects the long instance records, one event each.
const SIDE_EFFECTS: u64 = 50_000;
/// The most history rows the page may keep in the DOM at once.
const MAX_ROWS: u64 = 300;

/// Records `n` side effects in one turn: the fastest real way to a long
/// history (no activity round trips, one commit).
#[orchestrator]
async fn many_side_effects(ctx: Context, n: u64) -> u64 {
    let mut sum = 0;
    for i in 0..n {
        sum += ctx.side_effect(|| i);
    }
    sum
}

/// The height of a history row in pixels (`ROW` in `app.js`).
const ROW: u64 = 28;

/// The rows of the history in the DOM (those still loading included): how
/// many, and the first and last index of those shown.
const ROWS: &str = "const all = document.querySelectorAll('#history .spacer .hrow');
     const r = [...document.querySelectorAll('#history .hrow[data-index]')].map(e => +e.dataset.index);
     return { count: all.length, min: Math.min(...r), max: Math.max(...r) };";

/// How much of the history the page has: `<loaded> of <total> (<state>)`.
const STATE: &str = "const c = document.getElementById('history-count').dataset;
     return `${c.loaded} of ${c.total} (${c.state})`;";

#[test]
fn a_history_of_fifty_thousand_events_is_shown_soon_and_scrolls_with_few_rows() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let (runtime, server) = rt.block_on(async {
        let runtime = Runtime::builder()
            .sqlite(dir.path().join("durable.db"))
            .orchestrator(many_side_effects)
            // One turn records all of them: an unoptimised build on a
            // loaded machine needs more than the default 10 s for it.
            .turn_timeout(Duration::from_secs(240))
            .instance_lock(Duration::from_secs(300))
            // The long history is the point here, not a mistake to warn of.
            .history_warning(SIDE_EFFECTS * 2)
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

    let built = Instant::now();
    let total = rt.block_on(async {
        let setup = async {
            let h = client
                .start_with_id(many_side_effects, "long", SIDE_EFFECTS)
                .await
                .unwrap();
            h.result().await.unwrap();
            client.status("long").await.unwrap().history_len
        };
        tokio::time::timeout(Duration::from_secs(300), setup)
            .await
            .expect("the long instance finishes in time")
    });
    assert!(total > SIDE_EFFECTS, "{total} events");
    let last = total - 1;
    println!("built `long` with {total} events in {:?}", built.elapsed());

    // The history route, a page at a time, as a client of the server
    // reads it.
    let port = server.local_addr().port();
    let get = |path: &str| {
        let started = Instant::now();
        let page = webdriver::http(port, "GET", path, None).expect("the history route answers");
        (started.elapsed(), page)
    };
    for (what, from, limit) in [
        ("the first 1,000", 0, 1_000),
        ("1,000 from the middle", total / 2, 1_000),
        ("the last 1,000", total - 1_000, 1_000),
        ("the first 10,000", 0, 10_000),
    ] {
        let (took, page) = get(&format!(
            "/instances/long/history?from={from}&limit={limit}"
        ));
        assert_eq!(page["total"], json!(total), "{what}");
        assert_eq!(page["events"][0]["index"], json!(from), "{what}");
        println!("GET history, {what} events: {took:?}");
    }
    let mut whole = Duration::ZERO;
    let mut pages = 0;
    let mut from = Some(0);
    while let Some(f) = from {
        let (took, page) = get(&format!("/instances/long/history?from={f}&limit=10000"));
        whole += took;
        pages += 1;
        from = page["next"].as_u64();
    }
    println!("GET history, all {total} events in {pages} pages of 10,000: {whole:?}");

    let url = format!("http://{}/ui/", server.local_addr());
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let browser = Browser::start(shots);
    // The page loaded once first, so that the timing below is the
    // history's, not the browser's first start.
    browser.open(&format!("{url}#/"));
    browser.until(
        "the list",
        "return document.body.dataset.ready === 'yes' || null",
    );

    // From navigation to the history shown: its total written above it,
    // the scrollable height holding every event, its first rows in place.
    let opened = Instant::now();
    browser.open(&format!("{url}#/instances/long"));
    let shown = browser.until(
        "the first rows of the long history",
        &format!(
            "const c = document.getElementById('history-count');
             const first = document.querySelector('#history .hrow[data-index=\"0\"]');
             return (c && c.dataset.total === '{total}' && first) ? c.textContent : null;"
        ),
    );
    let first_screen = opened.elapsed();
    println!("the page showed the history's first rows and its total {first_screen:?} after navigation: {shown}");
    assert!(
        shown.as_str().unwrap().contains(&group(total)),
        "the history shows its total: {shown}"
    );
    let rows = browser.run(ROWS, &[]);
    assert!(rows["count"].as_u64().unwrap() < MAX_ROWS, "{rows}");
    assert_eq!(rows["min"], json!(0), "{rows}");
    assert_eq!(
        browser.run(
            "const v = document.getElementById('history'); return v.scrollHeight >= arguments[0] * arguments[1];",
            &[json!(total), json!(ROW)]
        ),
        json!(true),
        "the history scrolls over every event"
    );
    shoot(&browser, "long-history-top");

    // Straight to the end, most likely before the rest has loaded in the
    // background: the last event, the instance's `Completed`.
    let end = |what: &str| {
        let scrolled = Instant::now();
        browser.run(
            "const v = document.getElementById('history'); v.scrollTop = v.scrollHeight;",
            &[],
        );
        let rows = browser.until(
            "the last event",
            &format!(
                "const r = document.querySelector('#history .hrow[data-index=\"{last}\"]');
                 return r && r.dataset.kind === 'Completed' ? (() => {{ {ROWS} }})() : null;"
            ),
        );
        println!(
            "scrolled to the end {what}: its last rows shown after {:?}",
            scrolled.elapsed()
        );
        assert!(rows["count"].as_u64().unwrap() < MAX_ROWS, "{rows}");
        assert_eq!(rows["max"], json!(last), "{rows}");
        assert!(in_view(&browser, last), "#{last} is in view");
    };
    let state = browser.run(STATE, &[]);
    end(&format!("at once ({state})"));

    let loaded = browser.until(
        "the whole history loaded",
        &format!("if (document.getElementById('history-count').dataset.state !== 'idle') return null; {STATE}"),
    );
    println!(
        "the page had loaded the whole history {:?} after navigation ({loaded})",
        opened.elapsed()
    );
    assert!(
        loaded
            .as_str()
            .unwrap()
            .starts_with(&format!("{total} of {total} ")),
        "{loaded}"
    );

    // The middle: its rows, and still few of them.
    let middle = total / 2;
    let scrolled = Instant::now();
    browser.run(
        "document.getElementById('history').scrollTop = arguments[0] * arguments[1];",
        &[json!(middle), json!(ROW)],
    );
    let rows = browser.until(
        "the rows of the middle",
        &format!(
            "const r = document.querySelector('#history .hrow[data-index=\"{middle}\"]');
             return r && r.dataset.kind === 'SideEffect' && r.querySelector('span').textContent === '{middle}' ? (() => {{ {ROWS} }})() : null;"
        ),
    );
    println!(
        "scrolled to the middle: its rows shown after {:?}",
        scrolled.elapsed()
    );
    assert!(rows["count"].as_u64().unwrap() < MAX_ROWS, "{rows}");
    assert!(rows["min"].as_u64().unwrap() > 0, "{rows}");
    assert!(in_view(&browser, middle), "#{middle} is in view");
    shoot(&browser, "long-history-middle");

    end("once loaded");
    let shot = shoot(&browser, "long-history-end");
    println!("screenshots in {}", shot.parent().unwrap().display());

    drop(browser);
    rt.block_on(async {
        server.shutdown().await;
        runtime.shutdown().await.unwrap();
    });
}

/// A screenshot with the history in view (the page scrolled, not the
/// history).
fn shoot(browser: &Browser, name: &str) -> std::path::PathBuf {
    browser.run(
        "document.getElementById('history-count').scrollIntoView({ block: 'start' })",
        &[],
    );
    browser.screenshot(name)
}

/// Whether the row of `index` lies inside the history's visible box.
fn in_view(browser: &Browser, index: u64) -> bool {
    let v: Value = browser.run(
        "const v = document.getElementById('history').getBoundingClientRect();
         const r = document.querySelector(`#history .hrow[data-index=\"${arguments[0]}\"]`).getBoundingClientRect();
         return r.top >= v.top && r.bottom <= v.bottom + 1;",
        &[json!(index)],
    );
    v == true
}

/// `50002` as the page writes it: `50,002`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
