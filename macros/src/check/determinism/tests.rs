//! The checker on `parse_quote!` bodies: every rule, its short forms and
//! aliases, the near-misses that must pass, and the escape hatches.

use syn::{parse_quote, ItemFn};

use super::super::rules::RULES;
use crate::ast::Orchestrator;
use crate::errors::Errors;

/// Each error as `rule: what` (the offending code as the message quotes
/// it), or the whole message when it is not a rule's.
fn findings(item: &ItemFn) -> Vec<String> {
    let mut errors = Errors::new();
    super::check(&Orchestrator::from_syn(item), &mut errors);
    errors
        .messages()
        .into_iter()
        .map(|message| {
            let rule = RULES.iter().find(|rule| {
                message.starts_with(&format!("[durable::{}] ", rule.id))
                    && message.ends_with(&format!(" {}\nhelp: {}", rule.reason, rule.fix))
            });
            match rule {
                Some(rule) => {
                    let start = rule.id.len() + "[durable::] ".len();
                    let end =
                        message.len() - rule.reason.len() - rule.fix.len() - " \nhelp: ".len();
                    format!("{}: {}", rule.id, &message[start..end])
                }
                None => message,
            }
        })
        .collect()
}

/// The body wrapped in an orchestrator.
macro_rules! body {
    ($($body:tt)*) => {
        findings(&parse_quote! {
            async fn o(ctx: Context, input: u64) -> u64 { $($body)* }
        })
    };
}

#[test]
fn wall_clock() {
    assert_eq!(
        body! {
            let a = std::time::SystemTime::now();
            let b = ::std::time::Instant::now();
            let c = SystemTime::now();
            let d = Instant::now();
            let e = tokio::time::Instant::now();
            let f = chrono::Utc::now();
            let g = Local::now();
            let h = time::OffsetDateTime::now_utc();
            let i = jiff::Zoned::now();
            let j = started.elapsed();
            let k = Instant::now().elapsed();
            let l = ctx.now().elapsed();
            let m = times.iter().map(|_| SystemTime::now());
            let n = opt.unwrap_or_else(SystemTime::now);
        },
        [
            "wall_clock: `std::time::SystemTime::now`",
            "wall_clock: `::std::time::Instant::now`",
            "wall_clock: `SystemTime::now`",
            "wall_clock: `Instant::now`",
            "wall_clock: `tokio::time::Instant::now`",
            "wall_clock: `chrono::Utc::now`",
            "wall_clock: `Local::now`",
            "wall_clock: `time::OffsetDateTime::now_utc`",
            "wall_clock: `jiff::Zoned::now`",
            "wall_clock: `.elapsed()`",
            "wall_clock: `Instant::now`",
            "wall_clock: `.elapsed()`",
            "wall_clock: `SystemTime::now`",
            "wall_clock: `SystemTime::now`",
        ]
    );
}

#[test]
fn randomness_and_random_ids() {
    assert_eq!(
        body! {
            let a: u64 = rand::random();
            let b = rand::thread_rng().gen::<u64>();
            let c = thread_rng();
            let d = rand::rng();
            let e = rand::random_range(0..10);
            let f = OsRng.next_u64();
            let g = ThreadRng::default();
            let h = StdRng::from_entropy();
            let i = rand::rngs::SmallRng::from_os_rng();
            let j = getrandom::getrandom(&mut buf);
            let k = fastrand::u64(..);
            let l = uuid::Uuid::new_v4();
            let m = Uuid::now_v7();
            let n = ulid::Ulid::new();
        },
        [
            "randomness: `rand::random`",
            "randomness: `rand::thread_rng`",
            "randomness: `thread_rng`",
            "randomness: `rand::rng`",
            "randomness: `rand::random_range`",
            "randomness: `OsRng`",
            "randomness: `ThreadRng::default`",
            "randomness: `StdRng::from_entropy`",
            "randomness: `rand::rngs::SmallRng::from_os_rng`",
            "randomness: `getrandom::getrandom`",
            "randomness: `fastrand::u64`",
            "random_id: `uuid::Uuid::new_v4`",
            "random_id: `Uuid::now_v7`",
            "random_id: `ulid::Ulid::new`",
        ]
    );
}

#[test]
fn timers_threads_and_select() {
    assert_eq!(
        body! {
            std::thread::sleep(d);
            thread::sleep(d);
            tokio::time::sleep(d).await;
            time::sleep_until(t).await;
            let mut tick = tokio::time::interval(d);
            tokio::time::timeout(d, ctx.call(a, 1)).await;
            tokio::spawn(async {});
            tokio::task::spawn_blocking(|| 1);
            task::spawn_local(async {});
            std::thread::spawn(|| 1);
            thread::scope(|s| {});
            futures::executor::block_on(f);
            runtime.block_on(f);
            tokio::select! { a = ctx.call(a, 1) => a, b = ctx.sleep(d) => 0 }
            futures::select! { a = x => a }
        },
        [
            "real_timer: `std::thread::sleep`",
            "real_timer: `thread::sleep`",
            "real_timer: `tokio::time::sleep`",
            "real_timer: `time::sleep_until`",
            "real_timer: `tokio::time::interval`",
            "real_timer: `tokio::time::timeout`",
            "threads: `tokio::spawn`",
            "threads: `tokio::task::spawn_blocking`",
            "threads: `task::spawn_local`",
            "threads: `std::thread::spawn`",
            "threads: `thread::scope`",
            "threads: `futures::executor::block_on`",
            "threads: `.block_on(..)`",
            "unordered_select: `tokio::select!` without `biased;`",
            "unordered_select: `futures::select!`",
        ]
    );
}

#[test]
fn io_and_environment() {
    assert_eq!(
        body! {
            let a = std::fs::read_to_string("x");
            let b = fs::write("x", "y");
            let c = tokio::fs::read("x").await;
            let d = File::open("x");
            let e = std::net::TcpStream::connect(addr);
            let f = TcpListener::bind(addr);
            let g = tokio::net::lookup_host("x").await;
            let h = std::process::Command::new("ls");
            let i = process::id();
            let j = std::io::stdin().read_line(&mut s);
            let k = reqwest::get("http://x").await;
            let l = ureq::get("http://x").call();
            let m = "host:80".to_socket_addrs();
            let n = std::env::var("HOME");
            let o = env::args();
            let p = env::current_dir();
        },
        [
            "io: `std::fs::read_to_string`",
            "io: `fs::write`",
            "io: `tokio::fs::read`",
            "io: `File::open`",
            "io: `std::net::TcpStream::connect`",
            "io: `TcpListener::bind`",
            "io: `tokio::net::lookup_host`",
            "io: `std::process::Command::new`",
            "io: `process::id`",
            "io: `std::io::stdin`",
            "io: `reqwest::get`",
            "io: `ureq::get`",
            "io: `.to_socket_addrs()`",
            "env: `std::env::var`",
            "env: `env::args`",
            "env: `env::current_dir`",
        ]
    );
}

#[test]
fn hash_order_construction_and_iteration() {
    assert_eq!(
        findings(&parse_quote! {
            async fn o(ctx: Context, prices: HashMap<String, u64>, seen: &HashSet<u64>) {
                let a = HashMap::new();
                let b = std::collections::HashSet::<u64>::with_capacity(4);
                let c: HashMap<String, u64> = pairs.into_iter().collect();
                let d = pairs.into_iter().collect::<HashSet<_>>();
                let e = RandomState::new();
                let f = <HashMap<u8, u8>>::default();
                for (name, price) in &prices {}
                let total: u64 = prices.values().sum();
                for s in seen.iter() {}
                let moved = prices;
                for m in moved.keys() {}
                let declared: HashMap<u8, u8>;
                for x in declared {}
            }
        }),
        [
            "hash_order: `HashMap::new`",
            "hash_order: `std::collections::HashSet::with_capacity`",
            "hash_order: a `HashMap` built here",
            "hash_order: a `HashSet` built here",
            "hash_order: `RandomState::new`",
            "hash_order: `HashMap::default`",
            "hash_order: iterating `prices` (a `HashMap`)",
            "hash_order: iterating `prices` (a `HashMap`)",
            "hash_order: iterating `seen` (a `HashSet`)",
            "hash_order: iterating `moved` (a `HashMap`)",
            "hash_order: iterating `declared` (a `HashMap`)",
        ]
    );
}

#[test]
fn hash_order_is_reported_once_per_mistake() {
    assert_eq!(
        body! {
            let m: HashMap<u8, u8> = HashMap::new();
            for x in &m {}
            let n: HashMap<u8, u8> = pairs.collect();
            for x in n.iter() {}
        },
        [
            "hash_order: `HashMap::new`",
            "hash_order: a `HashMap` built here"
        ]
    );
}

#[test]
fn global_state() {
    assert_eq!(
        body! {
            unsafe { COUNTER += 1; }
            let n = unsafe { crate::TOTAL };
            CACHE.with(|cache| cache.borrow_mut().clear());
            HITS.fetch_add(1, Ordering::Relaxed);
            let guard = STATE.lock();
            thread_local! { static LOCAL: Cell<u8> = Cell::new(0); }
        },
        [
            "global_state: `COUNTER` (a `static mut`)",
            "global_state: `crate::TOTAL` (a `static mut`)",
            "global_state: `CACHE.with(..)`",
            "global_state: `HITS.fetch_add(..)`",
            "global_state: `STATE.lock(..)`",
            "global_state: `thread_local!`",
        ]
    );
}

#[test]
fn aliases_and_imports_inside_the_fn() {
    assert_eq!(
        body! {
            use std::time::SystemTime as Clock;
            use std::{env, thread};
            use std::time;
            use rand::random as dice;
            use tokio::select;
            use std::thread::*;
            let a = Clock::now();
            let b = env::var("X");
            thread::sleep(d);
            let c = time::Instant::now();
            let d: u8 = dice();
            select! { a = x => a }
            sleep(d);
            {
                use std::collections::HashMap as Map;
                let m = Map::new();
            }
        },
        [
            "wall_clock: `Clock::now`",
            "env: `env::var`",
            "real_timer: `thread::sleep`",
            "wall_clock: `time::Instant::now`",
            "randomness: `dice`",
            "unordered_select: `select!` without `biased;`",
            "real_timer: `sleep`",
            "hash_order: `Map::new`",
        ]
    );
}

#[test]
fn everywhere_in_the_body() {
    assert_eq!(
        body! {
            let f = || SystemTime::now();
            let g = async move { tokio::time::sleep(d).await };
            println!("{:?}", SystemTime::now());
            let s = format!("{}", rand::random::<u8>());
            let v = vec![Instant::now(); 2];
            assert!(env::var("X").is_ok(), "{}", 1);
            tokio::join!(ctx.call(a, 1), tokio::time::sleep(d));
            tokio::select! {
                biased;
                a = ctx.call(a, 1), if SystemTime::now() > t => a,
                _ = tokio::time::sleep(d) => { Instant::now(); 0 }
                else => 1,
            }
            fn helper() -> u64 { rand::random() }
            match x { Some(y) => thread_rng(), None => OsRng }
            Foo { at: SystemTime::now() };
        },
        [
            "wall_clock: `SystemTime::now`",
            "real_timer: `tokio::time::sleep`",
            "wall_clock: `SystemTime::now`",
            "randomness: `rand::random`",
            "wall_clock: `Instant::now`",
            "env: `env::var`",
            "real_timer: `tokio::time::sleep`",
            "wall_clock: `SystemTime::now`",
            "real_timer: `tokio::time::sleep`",
            "wall_clock: `Instant::now`",
            "randomness: `rand::random`",
            "randomness: `thread_rng`",
            "randomness: `OsRng`",
            "wall_clock: `SystemTime::now`",
        ]
    );
}

#[test]
fn near_misses_pass() {
    assert_eq!(
        findings(&parse_quote! {
            async fn o(ctx: Context, deadline: Option<SystemTime>) {
                // Names of local fns, methods and variables.
                fn now() -> u64 { 1 }
                fn random() -> u64 { 4 }
                fn sleep(_: u64) {}
                let a = now() + random();
                sleep(1);
                let now = ctx.now();
                let later = clock.now();
                let r = dice.random();
                rest.sleep(d);
                struct Instant;
                impl Instant { fn now() -> Self { Instant } }
                let i = Instant::now();
                mod fs { pub fn read() {} }
                fs::read();
                let spawn = |x: u64| x;
                spawn(1);
                let doc = File::new("report.pdf");
                // Types that are not built or iterated.
                let mut at: Option<Instant> = None;
                let index: Option<HashMap<String, u64>> = None;
                fn count(m: &HashMap<String, u64>) -> usize { m.len() }
                let size = index.map_or(0, |m| m.len());
                // The context's stand-ins.
                let t = ctx.now();
                ctx.sleep(Duration::from_secs(1)).await;
                ctx.sleep_until(t).await;
                let n = ctx.random();
                let id = ctx.uuid();
                // Ordered collections, explicit seeds and hashers.
                let mut map = BTreeMap::new();
                for (k, v) in &map {}
                let set: BTreeSet<u8> = items.collect();
                let rng = StdRng::seed_from_u64(ctx.random());
                let rng = ChaCha8Rng::from_seed(seed);
                let rng = fastrand::Rng::with_seed(7);
                let fixed = HashMap::with_hasher(FixedState::default());
                let fixed: HashMap<u8, u8, FixedState> = items.collect();
                // Text.
                let s = "SystemTime::now() and rand::random()";
                /// SystemTime::now() in a doc comment.
                let d = 1;
                // Paths of the user's own crate, and tokio's biased select.
                let c = crate::clock::SystemTime::now();
                use crate::clock::Instant as Mine;
                let m = Mine::now();
                tokio::select! { biased; a = ctx.call(a, 1) => a, b = ctx.sleep(d) => 0 }
                futures::select_biased! { a = x => a }
                // Consts and locals in `unsafe`, non-static receivers.
                const LIMIT: u64 = 3;
                let n = unsafe { LIMIT + input };
                lock.lock();
                values.iter();
            }
        }),
        Vec::<String>::new()
    );
}

#[test]
fn activities_and_orchestrators_nested_in_the_body_are_left_alone() {
    assert_eq!(
        body! {
            #[activity]
            async fn fetch() -> String { std::fs::read_to_string("x").unwrap() }
            #[durable::orchestrator]
            async fn inner(ctx: Context) { SystemTime::now(); }
        },
        Vec::<String>::new()
    );
}

#[test]
fn side_effect_is_an_escape_hatch_on_the_context_only() {
    assert_eq!(
        body! {
            let seed: u64 = ctx.side_effect(|| rand::random());
            let at = ctx.clone().side_effect(|| SystemTime::now());
            let other = helper.side_effect(|| SystemTime::now());
        },
        ["wall_clock: `SystemTime::now`"]
    );
}

#[test]
fn allow_on_a_statement_arm_or_fn() {
    assert_eq!(
        body! {
            #[durable::allow(wall_clock, reason = "logged only")]
            let at = SystemTime::now();
            #[durable::allow(wall_clock, randomness, reason = "logged only")]
            log(SystemTime::now(), rand::random::<u8>(), std::env::var("X"));
            #[durable::allow(io, reason = "a test fixture")]
            {
                std::fs::read("x");
                let f = || std::fs::read("y");
            }
            match x {
                #[durable::allow(env, reason = "read at the first turn only")]
                Some(_) => std::env::var("X"),
                None => std::env::var("Y"),
            }
            let after = SystemTime::now();
        },
        [
            "env: `std::env::var`",
            "env: `std::env::var`",
            "wall_clock: `SystemTime::now`",
        ]
    );
    assert_eq!(
        findings(&parse_quote! {
            #[durable::allow(hash_order, reason = "lookups only, never iterated")]
            async fn o(ctx: Context) {
                let m = HashMap::new();
                let t = Instant::now();
            }
        }),
        ["wall_clock: `Instant::now`"]
    );
}

#[test]
fn allow_mistakes_are_errors_that_say_what_is_valid() {
    let messages = body! {
        #[durable::allow(wallclock, reason = "x")]
        let a = 1;
        #[durable::allow(wall_clock)]
        let b = SystemTime::now();
        #[durable::allow(reason = "x")]
        let c = 1;
        #[durable::allow(io, reason = "")]
        let d = 1;
        let e = call(#[durable::allow(io, reason = "x")] std::fs::read("x"));
    };
    // `b`'s clock is not reported: its attribute is the one error there.
    assert_eq!(messages.len(), 5, "{messages:#?}");
    assert_eq!(
        messages[0],
        "unknown rule `wallclock`: expected one of `wall_clock`, `randomness`, `random_id`, `real_timer`, `threads`, `unordered_select`, `io`, `env`, `hash_order`, `global_state`, then `reason = \"..\"`"
    );
    assert_eq!(
        messages[1],
        "add `reason = \"..\"` to `#[durable::allow(..)]`: say why this is safe on replay"
    );
    assert!(
        messages[2].starts_with("name the rules to allow: `#[durable::allow(rule, reason = \"..\")]`, where a rule is one of `wall_clock`"),
        "{}",
        messages[2]
    );
    assert_eq!(
        messages[3],
        "the reason must not be empty: say why this is safe on replay"
    );
    assert!(
        messages[4].starts_with("`#[durable::allow(..)]` goes on a statement"),
        "{}",
        messages[4]
    );
}

#[test]
fn a_mistaken_allow_silences_its_statement_but_not_the_rest() {
    assert_eq!(
        body! {
            #[durable::allow(clock, reason = "logged only")]
            let a = SystemTime::now();
            let b = SystemTime::now();
        },
        [
            "unknown rule `clock`: expected one of `wall_clock`, `randomness`, `random_id`, `real_timer`, `threads`, `unordered_select`, `io`, `env`, `hash_order`, `global_state`, then `reason = \"..\"`",
            "wall_clock: `SystemTime::now`",
        ]
    );
}

#[test]
fn every_rule_has_a_failing_ui_case() {
    let fail = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui-tests/tests/ui/fail");
    let Ok(entries) = std::fs::read_dir(&fail) else {
        // Outside the workspace (a packaged crate) there is no UI suite.
        return;
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    for rule in RULES {
        let prefix = format!("{}-", rule.id.replace('_', "-"));
        assert!(
            names
                .iter()
                .any(|name| name.starts_with(&prefix) && name.ends_with(".rs")),
            "no tests/ui/fail/{prefix}*.rs for the rule `{}`",
            rule.id
        );
    }
}
