//! The determinism rules, all in one table ([`RULES`]): each rule's id,
//! what it matches, why that breaks replay and what to write instead.
//! Adding a rule is adding an entry; the checker in `determinism.rs` only
//! knows the kinds of [`Pattern`].
//!
//! A path pattern is written as text:
//!
//! - segments separated by `::`;
//! - `{a,b}` is a choice (an alternative may be empty or hold `::`);
//! - `|` before a segment marks the shortest tail that matches on its own:
//!   `std::time::|SystemTime::now` also matches `time::SystemTime::now` and
//!   `SystemTime::now`; without `|` only the whole path matches;
//! - `*` as the first or last segment stands for one or more segments:
//!   `std::|fs::*` is everything in `std::fs`.
//!
//! A path written with a leading `::` must match a pattern whole.

use self::Pattern::{Collection, Macro, Method, Path, StaticMethod, StaticMut, UnbiasedMacro};

/// One determinism rule.
pub(crate) struct Rule {
    /// The stable id: in every message (`[durable::wall_clock]`) and in
    /// `#[durable::allow(wall_clock, reason = "..")]`.
    pub(crate) id: &'static str,
    /// Why it breaks replay: a verb phrase that follows the offending code
    /// in the message ("`SystemTime::now` reads the wall clock, ..").
    pub(crate) reason: &'static str,
    /// What to write instead.
    pub(crate) fix: &'static str,
    /// What it matches.
    pub(crate) patterns: &'static [Pattern],
    /// Paths that look like a pattern but are deterministic (an explicit
    /// seed or hasher): never reported.
    pub(crate) except: &'static [&'static str],
}

/// What a rule matches, by the kind of syntax it looks at.
pub(crate) enum Pattern {
    /// A path in expression position, called or not
    /// (`SystemTime::now()`, `.map(SystemTime::now)`).
    Path(&'static str),
    /// A method call by name and number of arguments, whatever the
    /// receiver (`.elapsed()`).
    Method(&'static str, usize),
    /// A macro call, by path (`futures::select!`).
    Macro(&'static str),
    /// A macro call whose input does not start with `biased;`
    /// (`tokio::select!`).
    UnbiasedMacro(&'static str),
    /// A method (`{a,b}` choices allowed) called on a `SCREAMING_CASE` name,
    /// that is on a static (`COUNTER.with(..)`, `TOTAL.fetch_add(..)`).
    StaticMethod(&'static str),
    /// A `SCREAMING_CASE` name used inside `unsafe`: a `static mut`.
    StaticMut,
    /// A collection type with this many type parameters when its hasher is
    /// the default (more name an explicit hasher, which is fine): built by
    /// `let x: T = ..` or `.collect::<T>()`, or iterated through a binding
    /// declared with the type (an input, a `let x: T`).
    Collection(&'static str, usize),
}

/// The methods that iterate a collection, for [`Pattern::Collection`].
pub(crate) const ITERATING_METHODS: &[&str] = &[
    "iter",
    "iter_mut",
    "into_iter",
    "keys",
    "values",
    "values_mut",
    "into_keys",
    "into_values",
    "drain",
];

/// Every rule. The README's table is written from this one.
pub(crate) const RULES: &[Rule] = &[
    Rule {
        id: "wall_clock",
        reason: "reads the wall clock, which differs on replay",
        fix: "use `ctx.now()`, the time of the current turn as recorded in history (for a duration, `ctx.now().duration_since(earlier)`)",
        patterns: &[
            Path("std::time::|{SystemTime,Instant}::now"),
            Path("tokio::time::|Instant::now"),
            Path("chrono::{,offset::}|{Utc,Local}::{now,today}"),
            Path("time::|{OffsetDateTime::now_utc,OffsetDateTime::now_local,UtcDateTime::now}"),
            Path("jiff::|{Timestamp,Zoned}::now"),
            Method("elapsed", 0),
        ],
        except: &[],
    },
    Rule {
        id: "randomness",
        reason: "draws fresh randomness, which differs on replay",
        fix: "use `ctx.random()`, a random `u64` that replays identically, or seed an RNG with it (`StdRng::seed_from_u64(ctx.random())`)",
        patterns: &[
            Path("rand::|thread_rng"),
            Path("rand::{random,random_range,random_bool,random_ratio,random_iter,rng,fill}"),
            Path("rand::rngs::|{OsRng,ThreadRng}"),
            Path("rand::rngs::|{OsRng,ThreadRng}::*"),
            Path("*::{from_entropy,from_os_rng}"),
            Path("getrandom::*"),
            Path("fastrand::*"),
        ],
        except: &["fastrand::Rng::with_seed"],
    },
    Rule {
        id: "random_id",
        reason: "makes a random id, which differs on replay",
        fix: "use `ctx.uuid()`, a UUID-formatted id that replays identically",
        patterns: &[
            Path("uuid::|Uuid::{new_v4,new_v7,now_v1,now_v6,now_v7}"),
            Path("ulid::|Ulid::{new,from_datetime}"),
        ],
        except: &[],
    },
    Rule {
        id: "real_timer",
        reason: "waits on a real timer, which history does not record: a restart loses it and a replay waits again",
        fix: "use `ctx.sleep(duration)` or `ctx.sleep_until(time)`, durable timers; for a timeout, race the work against one with `durable::select`",
        patterns: &[
            Path("std::|thread::{sleep,sleep_ms}"),
            Path("tokio::|time::{sleep,sleep_until,interval,interval_at,timeout,timeout_at}"),
        ],
        except: &[],
    },
    Rule {
        id: "threads",
        reason: "runs work outside the orchestrator's turns, where history cannot record its result or its timing",
        fix: "run durable operations concurrently with `durable::join_all` or `durable::join`, and move blocking or parallel work into an `#[activity]`",
        patterns: &[
            Path("tokio::spawn"),
            Path("tokio::|task::{spawn,spawn_blocking,spawn_local,block_in_place}"),
            Path("std::|thread::{spawn,scope}"),
            Path("std::|thread::Builder::*"),
            Path("futures::executor::|block_on"),
            Path("*::block_on"),
            Method("block_on", 1),
        ],
        except: &[],
    },
    Rule {
        id: "unordered_select",
        reason: "picks a random ready branch, so a replay can take another one",
        fix: "use `durable::select` or `durable::select_all`, which replay the same winner, or write `biased;` first in `tokio::select!` to poll the branches in order",
        patterns: &[UnbiasedMacro("tokio::|select"), Macro("futures::select")],
        except: &[],
    },
    Rule {
        id: "io",
        reason: "does I/O, whose result history does not record: a replay does it again and can get another answer",
        fix: "move it into an `#[activity]` and call that with `ctx.call(..)`",
        patterns: &[
            Path("{std,tokio}::|{fs,process}::*"),
            Path("std::fs::|File::{open,create,create_new,options}"),
            Path("std::fs::|OpenOptions::new"),
            Path("std::net::|{TcpStream,TcpListener,UdpSocket}::*"),
            Path("tokio::net::|{TcpStream,TcpListener,UdpSocket,UnixStream,UnixListener,UnixDatagram}::*"),
            Path("tokio::|net::lookup_host"),
            Path("{std,tokio}::|io::{stdin}"),
            Path("{reqwest,hyper,ureq}::*"),
            Method("to_socket_addrs", 0),
        ],
        except: &[],
    },
    Rule {
        id: "env",
        reason: "reads the process environment, which can differ in the process that replays",
        fix: "pass the value in the orchestration's input, or read it once with `ctx.side_effect(|| ..)`",
        patterns: &[Path(
            "std::|env::{var,var_os,vars,vars_os,args,args_os,current_dir,current_exe,temp_dir,home_dir}",
        )],
        except: &[],
    },
    Rule {
        id: "hash_order",
        reason: "uses hash order, which is random in every process: a replay can visit the items in another order",
        fix: "use `BTreeMap` or `BTreeSet`, whose order is the keys' order",
        patterns: &[
            Path("std::collections::{,hash_map::}|HashMap::*"),
            Path("std::collections::{,hash_set::}|HashSet::*"),
            Path("std::{collections::hash_map,hash}::|RandomState::*"),
            Path("hashbrown::|{HashMap,HashSet}::*"),
            Collection("std::collections::{,hash_map::}|HashMap", 2),
            Collection("std::collections::{,hash_set::}|HashSet", 1),
            Collection("hashbrown::|HashMap", 2),
            Collection("hashbrown::|HashSet", 1),
        ],
        except: &["*::{with_hasher,with_capacity_and_hasher}"],
    },
    Rule {
        id: "global_state",
        reason: "uses global state, which history does not record and a replay does not reset",
        fix: "keep the state in local variables of the orchestrator, which replay rebuilds",
        patterns: &[
            StaticMut,
            StaticMethod("{with,with_borrow,with_borrow_mut,set,take,replace,lock,read,write,try_lock,try_read,try_write,load,store,swap,fetch_add,fetch_sub,fetch_and,fetch_nand,fetch_or,fetch_xor,fetch_max,fetch_min,fetch_update,compare_exchange,compare_exchange_weak}"),
            Macro("std::|thread_local"),
        ],
        except: &[],
    },
];

impl Rule {
    /// The error message for `what` (the offending code, quoted) breaking
    /// this rule: the id, why, and the fix.
    pub(crate) fn message(&self, what: &str) -> String {
        format!(
            "[durable::{}] {what} {}\nhelp: {}",
            self.id, self.reason, self.fix
        )
    }
}

/// A path as the checker sees it: its segments after resolving `use`
/// aliases, and whether it was written with a leading `::` (or comes from
/// a `use` that names a crate), which makes only whole-path matches count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) segments: Vec<String>,
    pub(crate) absolute: bool,
}

/// A compiled path pattern.
struct PathPattern {
    segments: Vec<String>,
    /// Index of the first segment of the shortest tail that matches.
    short: usize,
}

impl PathPattern {
    /// Every pattern `text` expands to.
    fn compile(text: &str) -> Vec<Self> {
        expand_choices(text)
            .into_iter()
            .map(|text| {
                let mut short = 0;
                let segments = text
                    .split("::")
                    .enumerate()
                    .map(|(i, segment)| match segment.strip_prefix('|') {
                        Some(rest) => {
                            short = i;
                            rest.to_owned()
                        }
                        None => segment.to_owned(),
                    })
                    .collect();
                Self { segments, short }
            })
            .collect()
    }

    fn matches(&self, candidate: &Candidate) -> bool {
        let last = if candidate.absolute { 0 } else { self.short };
        (0..=last).any(|start| segments_match(&self.segments[start..], &candidate.segments))
    }
}

/// Whether `path` is `pattern`, where `*` is one or more segments.
fn segments_match(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "*" => {
            (1..=path.len()).any(|taken| segments_match(rest, &path[taken..]))
        }
        Some((first, rest)) => path.first() == Some(first) && segments_match(rest, &path[1..]),
    }
}

/// `a::{b,c}::d` → `a::b::d`, `a::c::d`; several groups multiply.
fn expand_choices(text: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (text.find('{'), text.find('}')) else {
        return vec![text.to_owned()];
    };
    let (head, tail) = (&text[..open], &text[close + 1..]);
    text[open + 1..close]
        .split(',')
        .flat_map(|choice| expand_choices(&format!("{head}{choice}{tail}")))
        .collect()
}

/// One rule, its patterns compiled.
struct Compiled {
    rule: &'static Rule,
    paths: Vec<PathPattern>,
    methods: Vec<(String, usize)>,
    macros: Vec<(PathPattern, bool)>,
    static_methods: Vec<String>,
    static_mut: bool,
    collections: Vec<(PathPattern, usize)>,
    except: Vec<PathPattern>,
}

impl Compiled {
    fn new(rule: &'static Rule) -> Self {
        let mut compiled = Self {
            rule,
            paths: Vec::new(),
            methods: Vec::new(),
            macros: Vec::new(),
            static_methods: Vec::new(),
            static_mut: false,
            collections: Vec::new(),
            except: rule
                .except
                .iter()
                .flat_map(|text| PathPattern::compile(text))
                .collect(),
        };
        for pattern in rule.patterns {
            match *pattern {
                Path(text) => compiled.paths.extend(PathPattern::compile(text)),
                Method(name, args) => compiled.methods.push((name.to_owned(), args)),
                Macro(text) => compiled.macros.extend(
                    PathPattern::compile(text)
                        .into_iter()
                        .map(|path| (path, false)),
                ),
                UnbiasedMacro(text) => compiled.macros.extend(
                    PathPattern::compile(text)
                        .into_iter()
                        .map(|path| (path, true)),
                ),
                StaticMethod(names) => compiled.static_methods.extend(expand_choices(names)),
                StaticMut => compiled.static_mut = true,
                Collection(text, params) => compiled.collections.extend(
                    PathPattern::compile(text)
                        .into_iter()
                        .map(|path| (path, params)),
                ),
            }
        }
        compiled
    }

    fn excepted(&self, candidates: &[Candidate]) -> bool {
        candidates
            .iter()
            .any(|candidate| self.except.iter().any(|except| except.matches(candidate)))
    }
}

/// The rules, compiled for matching. Each query returns the index of the
/// first rule that matches, for [`Table::rule`].
pub(crate) struct Table {
    rules: Vec<Compiled>,
}

impl Table {
    /// Compiles [`RULES`].
    pub(crate) fn new() -> Self {
        Self {
            rules: RULES.iter().map(Compiled::new).collect(),
        }
    }

    /// The rule at `index`.
    pub(crate) fn rule(&self, index: usize) -> &'static Rule {
        self.rules[index].rule
    }

    /// How many rules there are.
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The index of the rule called `id`.
    pub(crate) fn find(&self, id: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|compiled| compiled.rule.id == id)
    }

    /// Every id, quoted and comma-separated, for messages.
    pub(crate) fn ids(&self) -> String {
        self.rules
            .iter()
            .map(|compiled| format!("`{}`", compiled.rule.id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A path in expression position, as its possible meanings.
    pub(crate) fn path(&self, candidates: &[Candidate]) -> Option<usize> {
        self.first(|compiled| {
            !compiled.excepted(candidates)
                && candidates.iter().any(|candidate| {
                    compiled
                        .paths
                        .iter()
                        .any(|pattern| pattern.matches(candidate))
                })
        })
    }

    /// A method call with `args` arguments.
    pub(crate) fn method(&self, name: &str, args: usize) -> Option<usize> {
        self.first(|compiled| {
            compiled
                .methods
                .iter()
                .any(|(method, count)| method == name && *count == args)
        })
    }

    /// A macro call; `biased` when its input starts with `biased;`. Also
    /// says whether the pattern that matched is an [`Pattern::UnbiasedMacro`].
    pub(crate) fn macro_call(
        &self,
        candidates: &[Candidate],
        biased: bool,
    ) -> Option<(usize, bool)> {
        self.rules.iter().enumerate().find_map(|(index, compiled)| {
            compiled
                .macros
                .iter()
                .find(|(pattern, unless_biased)| {
                    !(biased && *unless_biased)
                        && candidates
                            .iter()
                            .any(|candidate| pattern.matches(candidate))
                })
                .map(|(_, unless_biased)| (index, *unless_biased))
        })
    }

    /// A method called on a static.
    pub(crate) fn static_method(&self, name: &str) -> Option<usize> {
        self.first(|compiled| compiled.static_methods.iter().any(|method| method == name))
    }

    /// A `static mut` used inside `unsafe`.
    pub(crate) fn static_mut(&self) -> Option<usize> {
        self.first(|compiled| compiled.static_mut)
    }

    /// A type path with `type_args` type arguments that is a collection
    /// with hash order.
    pub(crate) fn collection(&self, candidates: &[Candidate], type_args: usize) -> Option<usize> {
        self.first(|compiled| {
            compiled.collections.iter().any(|(pattern, params)| {
                type_args <= *params
                    && candidates
                        .iter()
                        .any(|candidate| pattern.matches(candidate))
            })
        })
    }

    fn first(&self, matches: impl FnMut(&Compiled) -> bool) -> Option<usize> {
        self.rules.iter().position(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::{expand_choices, Candidate, PathPattern, Table, RULES};

    fn candidate(path: &str) -> Candidate {
        let absolute = path.starts_with("::");
        Candidate {
            segments: path
                .trim_start_matches("::")
                .split("::")
                .map(str::to_owned)
                .collect(),
            absolute,
        }
    }

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::compile(pattern)
            .iter()
            .any(|pattern| pattern.matches(&candidate(path)))
    }

    #[test]
    fn the_table_is_well_formed() {
        let mut ids: Vec<&str> = RULES.iter().map(|rule| rule.id).collect();
        for rule in RULES {
            assert!(
                rule.id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{}",
                rule.id
            );
            assert!(
                !rule.reason.is_empty() && !rule.fix.is_empty(),
                "{}",
                rule.id
            );
            assert!(!rule.reason.ends_with('.') && !rule.fix.ends_with('.'));
            assert!(!rule.patterns.is_empty(), "{}", rule.id);
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len(), "duplicate rule ids");
        for text in RULES
            .iter()
            .flat_map(|rule| rule.except.iter())
            .chain(RULES.iter().flat_map(|rule| {
                rule.patterns.iter().filter_map(|pattern| match pattern {
                    super::Pattern::Path(text)
                    | super::Pattern::Macro(text)
                    | super::Pattern::UnbiasedMacro(text)
                    | super::Pattern::Collection(text, _) => Some(text),
                    _ => None,
                })
            }))
        {
            for expanded in expand_choices(text) {
                assert!(
                    !expanded.contains(['{', '}', ',', ' ']) && !expanded.contains(":::"),
                    "{text} → {expanded}"
                );
            }
        }
    }

    #[test]
    fn choices_expand() {
        assert_eq!(expand_choices("a::b"), ["a::b"]);
        assert_eq!(expand_choices("a::{b,c::d}::e"), ["a::b::e", "a::c::d::e"]);
        assert_eq!(
            expand_choices("{x,y}::{,m::}|z"),
            ["x::|z", "x::m::|z", "y::|z", "y::m::|z"]
        );
    }

    #[test]
    fn a_bar_marks_the_shortest_tail() {
        let pattern = "std::time::|SystemTime::now";
        assert!(matches(pattern, "std::time::SystemTime::now"));
        assert!(matches(pattern, "time::SystemTime::now"));
        assert!(matches(pattern, "SystemTime::now"));
        assert!(matches(pattern, "::std::time::SystemTime::now"));
        assert!(!matches(pattern, "now"));
        assert!(!matches(pattern, "::SystemTime::now"));
        assert!(!matches(pattern, "my::SystemTime::now"));
        assert!(!matches(pattern, "SystemTime::now::more"));
        assert!(matches("rand::random", "rand::random"));
        assert!(!matches("rand::random", "random"));
    }

    #[test]
    fn a_star_is_one_or_more_segments() {
        assert!(matches("std::|fs::*", "std::fs::read"));
        assert!(matches("std::|fs::*", "fs::File::open"));
        assert!(!matches("std::|fs::*", "fs"));
        assert!(!matches("std::|fs::*", "std::fs"));
        assert!(matches("*::from_entropy", "StdRng::from_entropy"));
        assert!(matches(
            "*::from_entropy",
            "::rand::rngs::StdRng::from_entropy"
        ));
        assert!(!matches("*::from_entropy", "from_entropy"));
    }

    #[test]
    fn queries_return_the_rule() {
        let table = Table::new();
        let id = |index: Option<usize>| index.map(|index| table.rule(index).id);
        assert_eq!(
            id(table.path(&[candidate("SystemTime::now")])),
            Some("wall_clock")
        );
        assert_eq!(
            id(table.path(&[candidate("fastrand::u64")])),
            Some("randomness")
        );
        assert_eq!(
            id(table.path(&[candidate("fastrand::Rng::with_seed")])),
            None
        );
        assert_eq!(id(table.path(&[candidate("HashMap::with_hasher")])), None);
        assert_eq!(id(table.method("elapsed", 0)), Some("wall_clock"));
        assert_eq!(id(table.method("elapsed", 1)), None);
        let macro_id = |path: &str, biased: bool| {
            table
                .macro_call(&[candidate(path)], biased)
                .map(|(index, unless_biased)| (table.rule(index).id, unless_biased))
        };
        assert_eq!(macro_id("select", false), Some(("unordered_select", true)));
        assert_eq!(macro_id("select", true), None);
        assert_eq!(
            macro_id("futures::select", true),
            Some(("unordered_select", false))
        );
        assert_eq!(id(table.static_method("with")), Some("global_state"));
        assert_eq!(id(table.static_mut()), Some("global_state"));
        assert_eq!(
            id(table.collection(&[candidate("HashMap")], 2)),
            Some("hash_order")
        );
        assert_eq!(id(table.collection(&[candidate("HashMap")], 3)), None);
        assert_eq!(id(table.collection(&[candidate("BTreeMap")], 2)), None);
        assert_eq!(
            table.find("io").map(|index| table.rule(index).id),
            Some("io")
        );
        assert!(table.ids().starts_with("`wall_clock`, `randomness`"));
        assert_eq!(table.len(), RULES.len());
    }

    #[test]
    fn the_message_names_the_rule_why_and_the_fix() {
        let table = Table::new();
        let rule = table.rule(table.find("wall_clock").unwrap());
        assert_eq!(
            rule.message("`SystemTime::now`"),
            "[durable::wall_clock] `SystemTime::now` reads the wall clock, which differs on replay\nhelp: use `ctx.now()`, the time of the current turn as recorded in history (for a duration, `ctx.now().duration_since(earlier)`)"
        );
    }
}
