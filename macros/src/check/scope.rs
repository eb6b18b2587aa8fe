//! What a path in the body can mean, as far as syntax tells: the `use`
//! declarations of the enclosing blocks (aliases and globs), the items they
//! declare and the local bindings, innermost first. Names imported at the
//! module level are not visible to a macro; the rules' short forms
//! (`SystemTime::now`) stand in for them.

use std::collections::{BTreeMap, BTreeSet};

use syn::ext::IdentExt;
use syn::visit::{self, Visit};
use syn::{Block, Ident, Item, Pat, PatIdent, Path, StaticMutability, Stmt, UseTree};

use super::rules::Candidate;

/// A local binding (a parameter, a `let`, a closure or pattern binding).
#[derive(Clone, Debug)]
pub(super) struct Binding {
    /// When its declared type is a collection with hash order: that rule's
    /// index and the type's name, to say what is iterated.
    pub(super) hashed: Option<(usize, String)>,
}

/// The names one block (or a fn's parameters, a closure's, an arm's)
/// brings into scope.
#[derive(Default)]
pub(super) struct Scope {
    /// `use a::b as c;`: `c` → `a::b`.
    aliases: BTreeMap<String, Candidate>,
    /// `use a::b::*;`: `a::b`.
    globs: Vec<Candidate>,
    /// Items declared here: they shadow the first segment of any path.
    items: BTreeSet<String>,
    /// `static mut` items declared here.
    static_muts: BTreeSet<String>,
    /// Local bindings: they shadow one-segment paths.
    values: BTreeMap<String, Binding>,
}

impl Scope {
    /// The `use` declarations and items of `block`, which are visible in
    /// the whole block whatever their place.
    pub(super) fn of_block(block: &Block) -> Self {
        let mut scope = Self::default();
        for stmt in &block.stmts {
            if let Stmt::Item(item) = stmt {
                scope.declare(item);
            }
        }
        scope
    }

    fn declare(&mut self, item: &Item) {
        let ident = match item {
            Item::Use(item) => {
                self.import(Vec::new(), item.leading_colon.is_some(), &item.tree);
                return;
            }
            Item::Static(item) => {
                if matches!(item.mutability, StaticMutability::Mut(_)) {
                    self.static_muts.insert(name(&item.ident));
                }
                &item.ident
            }
            Item::Const(item) => &item.ident,
            Item::Enum(item) => &item.ident,
            Item::ExternCrate(item) => item.rename.as_ref().map_or(&item.ident, |(_, ident)| ident),
            Item::Fn(item) => &item.sig.ident,
            Item::Macro(item) => match &item.ident {
                Some(ident) => ident,
                None => return,
            },
            Item::Mod(item) => &item.ident,
            Item::Struct(item) => &item.ident,
            Item::Trait(item) => &item.ident,
            Item::TraitAlias(item) => &item.ident,
            Item::Type(item) => &item.ident,
            Item::Union(item) => &item.ident,
            _ => return,
        };
        self.items.insert(name(ident));
    }

    /// Records the names a `use` tree brings in, under `prefix`.
    fn import(&mut self, mut prefix: Vec<String>, absolute: bool, tree: &UseTree) {
        match tree {
            UseTree::Path(path) => {
                prefix.push(name(&path.ident));
                self.import(prefix, absolute, &path.tree);
            }
            UseTree::Name(use_name) => {
                let alias = if use_name.ident == "self" {
                    prefix.last().cloned()
                } else {
                    prefix.push(name(&use_name.ident));
                    prefix.last().cloned()
                };
                if let Some(alias) = alias {
                    self.alias(alias, prefix, absolute);
                }
            }
            UseTree::Rename(rename) => {
                if rename.rename == "_" {
                    return;
                }
                if rename.ident != "self" {
                    prefix.push(name(&rename.ident));
                }
                self.alias(name(&rename.rename), prefix, absolute);
            }
            UseTree::Glob(_) => self.globs.push(Candidate {
                segments: prefix,
                absolute,
            }),
            UseTree::Group(group) => {
                for tree in &group.items {
                    self.import(prefix.clone(), absolute, tree);
                }
            }
        }
    }

    fn alias(&mut self, alias: String, segments: Vec<String>, absolute: bool) {
        if !segments.is_empty() {
            self.aliases.insert(alias, Candidate { segments, absolute });
        }
    }

    /// Binds every name in `pat`; `hashed` when the pattern's declared type
    /// is a collection with hash order (only a plain name keeps it).
    pub(super) fn bind(&mut self, pat: &Pat, hashed: Option<(usize, String)>) {
        let plain = matches!(pat, Pat::Ident(PatIdent { subpat: None, .. }));
        let mut names = Names::default();
        names.visit_pat(pat);
        for ident in names.0 {
            let hashed = if plain { hashed.clone() } else { None };
            self.values.insert(name(&ident), Binding { hashed });
        }
    }
}

/// The identifiers a pattern binds.
#[derive(Default)]
struct Names(Vec<Ident>);

impl<'ast> Visit<'ast> for Names {
    fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
        self.0.push(pat.ident.clone());
        visit::visit_pat_ident(self, pat);
    }
}

/// The scopes around the code being checked, innermost last.
#[derive(Default)]
pub(super) struct Scopes {
    stack: Vec<Scope>,
}

impl Scopes {
    pub(super) fn push(&mut self, scope: Scope) {
        self.stack.push(scope);
    }

    pub(super) fn pop(&mut self) {
        self.stack.pop();
    }

    /// The innermost scope; there is always one while a body is checked.
    pub(super) fn top(&mut self) -> &mut Scope {
        if self.stack.is_empty() {
            self.stack.push(Scope::default());
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    /// What `path` can mean outside the body: nothing when it names
    /// something the body declares (or `crate`, `self`, `super`), else the
    /// path through the `use` aliases, and under each glob import.
    pub(super) fn resolve(&self, path: &Path) -> Vec<Candidate> {
        let candidate = Candidate {
            segments: path
                .segments
                .iter()
                .map(|segment| name(&segment.ident))
                .collect(),
            absolute: path.leading_colon.is_some(),
        };
        self.resolve_candidate(candidate, 0, true)
    }

    /// `globs`: whether the glob imports apply (not to a `use` target).
    fn resolve_candidate(&self, candidate: Candidate, depth: usize, globs: bool) -> Vec<Candidate> {
        let Some(first) = candidate.segments.first() else {
            return Vec::new();
        };
        if candidate.absolute {
            return vec![candidate];
        }
        if matches!(first.as_str(), "crate" | "self" | "super" | "Self") {
            return Vec::new();
        }
        for scope in self.stack.iter().rev() {
            if let Some(target) = scope.aliases.get(first) {
                let mut segments = target.segments.clone();
                segments.extend(candidate.segments[1..].iter().cloned());
                let resolved = Candidate {
                    segments,
                    absolute: target.absolute,
                };
                // `use std::fs; use fs::File;`: an alias can name another.
                return if depth < 8 && resolved.segments.first() != Some(first) {
                    self.resolve_candidate(resolved, depth + 1, false)
                } else {
                    vec![resolved]
                };
            }
            if scope.items.contains(first)
                || (candidate.segments.len() == 1 && scope.values.contains_key(first))
            {
                return Vec::new();
            }
        }
        if !globs {
            return vec![candidate];
        }
        let globbed = self
            .stack
            .iter()
            .flat_map(|scope| &scope.globs)
            .map(|glob| {
                let mut segments = glob.segments.clone();
                segments.extend(candidate.segments.iter().cloned());
                Candidate {
                    segments,
                    absolute: glob.absolute,
                }
            });
        let mut candidates: Vec<Candidate> = globbed.collect();
        candidates.insert(0, candidate);
        candidates
    }

    /// The local binding `ident` names, if the body declares one.
    pub(super) fn binding(&self, ident: &Ident) -> Option<&Binding> {
        let ident = name(ident);
        for scope in self.stack.iter().rev() {
            if let Some(binding) = scope.values.get(&ident) {
                return Some(binding);
            }
            if scope.items.contains(&ident) {
                return None;
            }
        }
        None
    }

    /// Whether `ident` names a `static mut` or something declared outside
    /// the body (a `static mut` there, as far as syntax can tell), rather
    /// than a local binding or a local non-`mut` item.
    pub(super) fn may_be_static_mut(&self, ident: &Ident) -> bool {
        let ident = name(ident);
        for scope in self.stack.iter().rev() {
            if scope.static_muts.contains(&ident) {
                return true;
            }
            if scope.values.contains_key(&ident) || scope.items.contains(&ident) {
                return false;
            }
        }
        true
    }
}

/// An identifier as text, without `r#`.
pub(super) fn name(ident: &Ident) -> String {
    ident.unraw().to_string()
}

#[cfg(test)]
mod tests {
    use super::{Scope, Scopes};
    use syn::{parse_quote, Block, Path};

    fn resolve(block: &Block, path: &Path) -> Vec<String> {
        let mut scopes = Scopes::default();
        scopes.push(Scope::of_block(block));
        scopes
            .resolve(path)
            .into_iter()
            .map(|candidate| {
                format!(
                    "{}{}",
                    if candidate.absolute { "::" } else { "" },
                    candidate.segments.join("::")
                )
            })
            .collect()
    }

    #[test]
    fn aliases_globs_and_local_items() {
        let block: Block = parse_quote!({
            use ::tokio::time;
            use fs::read as r;
            use rand::prelude::*;
            use some::Trait as _;
            use std::time::SystemTime as Clock;
            use std::{
                env,
                fs::{self, File as F},
            };
            mod local {}
            fn helper() {}
        });
        let cases: [(Path, &[&str]); 9] = [
            (parse_quote!(Clock::now), &["std::time::SystemTime::now"]),
            (parse_quote!(env::var), &["std::env::var"]),
            (parse_quote!(fs::read), &["std::fs::read"]),
            (parse_quote!(F::open), &["std::fs::File::open"]),
            (parse_quote!(r), &["std::fs::read"]),
            (parse_quote!(time::sleep), &["::tokio::time::sleep"]),
            (
                parse_quote!(thread_rng),
                &["thread_rng", "rand::prelude::thread_rng"],
            ),
            (parse_quote!(local::now), &[]),
            (parse_quote!(crate::now), &[]),
        ];
        for (path, expected) in cases {
            assert_eq!(resolve(&block, &path), expected, "{}", quote::quote!(#path));
        }
        assert!(resolve(&block, &parse_quote!(helper)).is_empty());
    }
}
