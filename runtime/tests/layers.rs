//! The runtime's modules form one straight line of layers: each module
//! names only modules of its own layer or below (`crate::<module>` paths in
//! its source), and there is no import circle at all. A module added to the
//! crate must be placed in `LAYERS`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom up; the README's "How it works" draws the same picture.
const LAYERS: &[&[&str]] = &[
    &["history", "bytes"],
    &[
        "ids", "clock", "config", "policy", "retry", "shutdown", "status", "unwind", "time",
        "metrics", "diff",
    ],
    &["store", "why"],
    &["error"],
    &[
        "activity",
        "combinator",
        "context",
        "entity",
        "orchestrator",
        "registry",
        "replay",
    ],
    &["mailbox", "waiters"],
    &["client", "dispatcher", "worker"],
    &["check", "runtime", "testing"],
    &["lib", "__private"],
];

/// Where the crate-root re-exports that source files name live.
const ROOT_EXPORTS: &[(&str, &str)] = &[
    ("Activity", "activity"),
    ("ActivityError", "activity"),
    ("Blocker", "why"),
    ("Client", "client"),
    ("Context", "context"),
    ("Error", "error"),
    ("Failure", "history"),
    ("Incompatible", "check"),
    ("FailureKind", "history"),
    ("InstanceStatus", "status"),
    ("RuntimeStatus", "history"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Top-level module of a source file: `store/sqlite/queries.rs` -> `store`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            // Unit test modules may reach anywhere.
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(path);
        }
    }
}

/// Every `crate::name` path in `text`, outside comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if let Some((_, module)) = ROOT_EXPORTS.iter().find(|(n, _)| *n == name) {
                found.insert((*module).to_owned());
            } else if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
        // `use crate::{a, b}` lists several.
        if let Some(at) = code.find("crate::{") {
            for part in code[at + "crate::{".len()..].split([',', '}']) {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn modules_import_only_their_layer_or_below_and_never_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        let text = std::fs::read_to_string(file).expect("readable");
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        for dep in crate_paths(text) {
            if dep.starts_with(char::is_uppercase) {
                panic!("{}: `crate::{dep}`: add it to ROOT_EXPORTS", file.display());
            }
            if dep != module && layer_of(&dep).is_some() {
                deps.insert(dep);
            }
        }
    }
    let mut wrong = Vec::new();
    for (module, deps) in &graph {
        let Some(own) = layer_of(module) else {
            wrong.push(format!(
                "module `{module}` is in no layer: add it to LAYERS"
            ));
            continue;
        };
        for dep in deps {
            let theirs = layer_of(dep).expect("filtered above");
            if theirs > own {
                wrong.push(format!(
                    "`{module}` (layer {own}) imports `{dep}` (layer {theirs})"
                ));
            }
        }
    }
    // No circle, within a layer either: repeatedly remove modules whose
    // dependencies are all removed.
    let mut left: BTreeMap<&String, BTreeSet<&String>> =
        graph.iter().map(|(m, d)| (m, d.iter().collect())).collect();
    while let Some(leaf) = left
        .iter()
        .find(|(_, d)| d.iter().all(|x| !left.contains_key(*x)))
        .map(|(m, _)| *m)
    {
        left.remove(leaf);
    }
    if !left.is_empty() {
        wrong.push(format!(
            "import circle among {:?}",
            left.keys().collect::<Vec<_>>()
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
