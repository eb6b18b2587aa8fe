//! The determinism checker: walks an orchestrator's body, with its
//! closures, async blocks, nested fns and the expressions inside macro
//! calls, and reports every use of what the rule table ([`super::rules`])
//! lists, each on its own tokens. Every violation is reported, not just the
//! first.
//!
//! It reads syntax only: a path means what the body's own `use`
//! declarations say, or else what its usual import means (`SystemTime::now`
//! is std's). A local item or binding of the same name is left alone, and
//! so is what the body reaches through a helper fn defined elsewhere; the
//! runtime catches a non-durable await when it happens.
//!
//! Two escape hatches are left alone on purpose: the closure passed to
//! `ctx.side_effect(..)` (its value is recorded in history), and code under
//! `#[durable::allow(rule, reason = "..")]` (see `allow.rs`).

use std::ptr;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{
    Arm, Attribute, Block, Expr, ExprClosure, ExprForLoop, ExprMethodCall, ExprPath, ExprUnsafe,
    FieldValue, FnArg, GenericArgument, ImplItemFn, Item, ItemFn, Local, Macro, Pat, Path,
    PathArguments, Stmt, Token, Type,
};

use super::allow;
use super::macro_input::{macro_exprs, starts_with_biased};
use super::rules::{Candidate, Table, ITERATING_METHODS};
use super::scope::{name, Scope, Scopes};
use crate::ast::{self, Orchestrator};
use crate::errors::Errors;

/// The method whose closure is the recorded escape hatch.
const SIDE_EFFECT: &str = "side_effect";

/// Checks `orchestrator`'s body against every rule; see the module docs.
pub(super) fn check(orchestrator: &Orchestrator<'_>, errors: &mut Errors) {
    let item = orchestrator.function.item;
    let table = Table::new();
    let mut checker = Checker {
        allowed: vec![0; table.len()],
        table,
        ctx: orchestrator
            .context
            .as_ref()
            .and_then(|context| context.ident)
            .map(name),
        scopes: Scopes::default(),
        unsafe_depth: 0,
        statement: None,
        errors,
    };
    let allowed = allow::parse(&item.attrs, &checker.table, checker.errors);
    checker.count(&allowed, true);
    let params = checker.params(&item.sig.inputs);
    checker.scopes.push(params);
    checker.visit_block(&item.block);
}

struct Checker<'e> {
    table: Table,
    /// Per rule, how many enclosing `#[durable::allow]` allow it.
    allowed: Vec<usize>,
    /// The context's name, to recognise `ctx.side_effect(..)`; `None` when
    /// the signature is wrong, and then any receiver counts.
    ctx: Option<String>,
    scopes: Scopes,
    unsafe_depth: usize,
    /// The expression of the statement being visited: its attributes are
    /// the statement's (compared by address only).
    statement: Option<*const Expr>,
    errors: &'e mut Errors,
}

impl Checker<'_> {
    /// Reports `what` (the offending code, quoted) against `rule`, on
    /// `tokens`, unless an enclosing attribute allows it.
    fn report(&mut self, rule: usize, tokens: impl ToTokens, what: &str) {
        if self.allowed[rule] == 0 {
            let message = self.table.rule(rule).message(what);
            self.errors.error_at(tokens, message);
        }
    }

    fn count(&mut self, rules: &[usize], add: bool) {
        for &rule in rules {
            if add {
                self.allowed[rule] += 1;
            } else {
                self.allowed[rule] -= 1;
            }
        }
    }

    /// Runs `visit` with the rules that `attrs` allow, allowed.
    fn allowing(&mut self, attrs: &[Attribute], visit: impl FnOnce(&mut Self)) {
        let allowed = allow::parse(attrs, &self.table, self.errors);
        self.count(&allowed, true);
        visit(self);
        self.count(&allowed, false);
    }

    /// Runs `visit` after reporting an allow attribute among `attrs` that
    /// is where it cannot be (the macro strips it); the code under it is
    /// then not checked, as its one error is the attribute's place.
    fn misplaced(&mut self, attrs: &[Attribute], visit: impl FnOnce(&mut Self)) {
        let mut misplaced = false;
        for attr in attrs.iter().filter(|attr| allow::is_allow(attr)) {
            misplaced = true;
            self.errors.error_at(
                attr,
                "`#[durable::allow(..)]` goes on a statement, a match arm or the orchestrator fn: move it to the statement that holds this code",
            );
        }
        let all: Vec<usize> = if misplaced {
            (0..self.table.len()).collect()
        } else {
            Vec::new()
        };
        self.count(&all, true);
        visit(self);
        self.count(&all, false);
    }

    fn is_ctx(&self, expr: &Expr) -> bool {
        self.ctx
            .as_ref()
            .is_none_or(|ctx| ast::is_context_expr(expr, ctx))
    }

    /// A scope with a fn's parameters.
    fn params(&self, inputs: &Punctuated<FnArg, Token![,]>) -> Scope {
        let mut scope = Scope::default();
        for input in inputs {
            if let FnArg::Typed(param) = input {
                let hashed = self.hashed_type(&param.ty);
                scope.bind(&param.pat, hashed);
            }
        }
        scope
    }

    /// When `ty` is a collection with hash order: the rule and its name.
    fn hashed_type(&self, ty: &Type) -> Option<(usize, String)> {
        let Type::Path(ty) = peel_type(ty) else {
            return None;
        };
        if ty.qself.is_some() {
            return None;
        }
        let last = ty.path.segments.last()?;
        let type_args = match &last.arguments {
            PathArguments::AngleBracketed(args) => args
                .args
                .iter()
                .filter(|arg| matches!(arg, GenericArgument::Type(_)))
                .count(),
            _ => 0,
        };
        let rule = self
            .table
            .collection(&self.scopes.resolve(&ty.path), type_args)?;
        Some((rule, name(&last.ident)))
    }

    /// When `expr` is (a reference to) a binding declared with a hashed
    /// collection type: the rule, the binding and the type's name.
    fn hashed_binding(&self, expr: &Expr) -> Option<(usize, String, String)> {
        let Expr::Path(ExprPath {
            qself: None, path, ..
        }) = peel_expr(expr)
        else {
            return None;
        };
        let ident = path.get_ident()?;
        let (rule, ty) = self.scopes.binding(ident)?.hashed.clone()?;
        Some((rule, name(ident), ty))
    }

    /// What a path in expression position can mean; `<T>::f` and
    /// `<T as Trait>::f` count as `T::f`.
    fn candidates(&self, expr: &ExprPath) -> (Vec<Candidate>, String) {
        let Some(qself) = &expr.qself else {
            return (self.scopes.resolve(&expr.path), path_text(&expr.path));
        };
        let Type::Path(ty) = peel_type(&qself.ty) else {
            return (Vec::new(), String::new());
        };
        if ty.qself.is_some() {
            return (Vec::new(), String::new());
        }
        let mut path = ty.path.clone();
        for segment in expr.path.segments.iter().skip(qself.position) {
            path.segments.push(segment.clone());
        }
        (self.scopes.resolve(&path), path_text(&path))
    }

    /// The rule a call's callee breaks, if it is a path that does.
    fn callee_rule(&self, expr: &Expr) -> Option<usize> {
        let Expr::Call(call) = peel_expr(expr) else {
            return None;
        };
        let Expr::Path(callee) = peel_expr(&call.func) else {
            return None;
        };
        self.table.path(&self.candidates(callee).0)
    }

    /// A `static mut` inside `unsafe`: a `SCREAMING_CASE` name that the
    /// body does not bind, alone or under `crate`/`self`/`super`.
    fn is_static_mut(&self, expr: &ExprPath) -> bool {
        if self.unsafe_depth == 0 || expr.qself.is_some() {
            return false;
        }
        let segments = &expr.path.segments;
        let Some(last) = segments.last() else {
            return false;
        };
        if !is_screaming(&name(&last.ident)) {
            return false;
        }
        if segments.len() == 1 {
            return expr.path.leading_colon.is_none() && self.scopes.may_be_static_mut(&last.ident);
        }
        matches!(
            name(&segments[0].ident).as_str(),
            "crate" | "self" | "super"
        )
    }

    /// `NAME` in `NAME.method(..)`, when it looks like a static.
    fn static_receiver<'a>(&self, receiver: &'a Expr) -> Option<&'a syn::Ident> {
        let Expr::Path(ExprPath {
            qself: None, path, ..
        }) = peel_expr(receiver)
        else {
            return None;
        };
        let ident = path.get_ident()?;
        (is_screaming(&name(ident)) && self.scopes.binding(ident).is_none()).then_some(ident)
    }
}

impl<'ast> Visit<'ast> for Checker<'_> {
    fn visit_block(&mut self, block: &'ast Block) {
        self.scopes.push(Scope::of_block(block));
        for stmt in &block.stmts {
            self.visit_stmt(stmt);
            if let Stmt::Local(local) = stmt {
                let hashed = match (&local.pat, &local.init) {
                    // Declared, or moved from another binding: iterating it
                    // is the mistake. Built here: already reported.
                    (Pat::Type(typed), init)
                        if init.as_ref().is_none_or(|init| is_plain_path(&init.expr)) =>
                    {
                        self.hashed_type(&typed.ty)
                    }
                    (Pat::Type(_), _) => None,
                    (_, Some(init)) => self
                        .hashed_binding(&init.expr)
                        .map(|(rule, _, ty)| (rule, ty)),
                    (_, None) => None,
                };
                let pat = match &local.pat {
                    Pat::Type(typed) => &*typed.pat,
                    pat => pat,
                };
                self.scopes.top().bind(pat, hashed);
            }
        }
        self.scopes.pop();
    }

    fn visit_stmt(&mut self, stmt: &'ast Stmt) {
        let attrs = match stmt {
            Stmt::Local(local) => &local.attrs[..],
            Stmt::Expr(expr, _) => {
                self.statement = Some(ptr::from_ref(expr));
                ast::expr_attrs(expr)
            }
            Stmt::Macro(mac) => &mac.attrs[..],
            // `visit_item` reads an item's own attributes.
            Stmt::Item(_) => &[],
        };
        self.allowing(attrs, |this| visit::visit_stmt(this, stmt));
    }

    fn visit_expr(&mut self, expr: &'ast Expr) {
        if self
            .statement
            .is_some_and(|statement| ptr::eq(statement, expr))
        {
            self.statement = None;
            visit::visit_expr(self, expr);
        } else {
            self.misplaced(ast::expr_attrs(expr), |this| visit::visit_expr(this, expr));
        }
    }

    fn visit_field_value(&mut self, field: &'ast FieldValue) {
        self.misplaced(&field.attrs, |this| visit::visit_field_value(this, field));
    }

    fn visit_item(&mut self, item: &'ast Item) {
        // An activity may do anything; a nested orchestrator is checked by
        // its own attribute.
        if let Item::Fn(function) = item {
            if function.attrs.iter().any(|attr| {
                attr.path()
                    .segments
                    .last()
                    .is_some_and(|last| last.ident == "activity" || last.ident == "orchestrator")
            }) {
                return;
            }
        }
        self.allowing(ast::item_attrs(item), |this| visit::visit_item(this, item));
    }

    fn visit_item_fn(&mut self, function: &'ast ItemFn) {
        let params = self.params(&function.sig.inputs);
        self.scopes.push(params);
        visit::visit_item_fn(self, function);
        self.scopes.pop();
    }

    fn visit_impl_item_fn(&mut self, function: &'ast ImplItemFn) {
        let params = self.params(&function.sig.inputs);
        self.scopes.push(params);
        visit::visit_impl_item_fn(self, function);
        self.scopes.pop();
    }

    fn visit_expr_closure(&mut self, closure: &'ast ExprClosure) {
        let mut scope = Scope::default();
        for input in &closure.inputs {
            match input {
                Pat::Type(typed) => scope.bind(&typed.pat, self.hashed_type(&typed.ty)),
                pat => scope.bind(pat, None),
            }
        }
        self.scopes.push(scope);
        visit::visit_expr_closure(self, closure);
        self.scopes.pop();
    }

    fn visit_arm(&mut self, arm: &'ast Arm) {
        let mut scope = Scope::default();
        scope.bind(&arm.pat, None);
        self.scopes.push(scope);
        self.allowing(&arm.attrs, |this| visit::visit_arm(this, arm));
        self.scopes.pop();
    }

    fn visit_expr_for_loop(&mut self, for_loop: &'ast ExprForLoop) {
        if let Some((rule, binding, ty)) = self.hashed_binding(&for_loop.expr) {
            self.report(
                rule,
                &for_loop.expr,
                &format!("iterating `{binding}` (a `{ty}`)"),
            );
        }
        self.visit_expr(&for_loop.expr);
        let mut scope = Scope::default();
        scope.bind(&for_loop.pat, None);
        self.scopes.push(scope);
        self.visit_block(&for_loop.body);
        self.scopes.pop();
    }

    fn visit_expr_unsafe(&mut self, block: &'ast ExprUnsafe) {
        self.unsafe_depth += 1;
        visit::visit_expr_unsafe(self, block);
        self.unsafe_depth -= 1;
    }

    fn visit_local(&mut self, local: &'ast Local) {
        if let (Pat::Type(typed), Some(init)) = (&local.pat, &local.init) {
            if let Some((rule, ty)) = self.hashed_type(&typed.ty) {
                let moved = is_plain_path(&init.expr);
                if !moved && self.callee_rule(&init.expr).is_none() {
                    self.report(rule, &typed.ty, &format!("a `{ty}` built here"));
                }
            }
        }
        visit::visit_local(self, local);
    }

    fn visit_expr_path(&mut self, expr: &'ast ExprPath) {
        if self.is_static_mut(expr) {
            if let Some(rule) = self.table.static_mut() {
                let what = format!("`{}` (a `static mut`)", path_text(&expr.path));
                self.report(rule, expr, &what);
            }
        } else {
            let (candidates, text) = self.candidates(expr);
            if let Some(rule) = self.table.path(&candidates) {
                self.report(rule, expr, &format!("`{text}`"));
            }
        }
        visit::visit_expr_path(self, expr);
    }

    fn visit_expr_method_call(&mut self, call: &'ast ExprMethodCall) {
        let method = name(&call.method);
        if method == SIDE_EFFECT && self.is_ctx(&call.receiver) {
            // The escape hatch: its closure runs once, and replay reuses
            // the value recorded in history.
            self.visit_expr(&call.receiver);
            return;
        }
        if let Some(rule) = self.table.method(&method, call.args.len()) {
            // `Instant::now().elapsed()` is one mistake, reported on `now`.
            if self.callee_rule(&call.receiver) != Some(rule) {
                let args = if call.args.is_empty() { "" } else { ".." };
                let close = call.paren_token.span.close();
                self.report(
                    rule,
                    through(&call.method, close),
                    &format!("`.{method}({args})`"),
                );
            }
        }
        if let Some(ident) = self.static_receiver(&call.receiver) {
            if let Some(rule) = self.table.static_method(&method) {
                let what = format!("`{}.{method}(..)`", name(ident));
                let method_ident = &call.method;
                self.report(rule, quote!(#ident . #method_ident), &what);
            }
        }
        if ITERATING_METHODS.contains(&method.as_str()) {
            if let Some((rule, binding, ty)) = self.hashed_binding(&call.receiver) {
                let receiver = &call.receiver;
                let method_ident = &call.method;
                self.report(
                    rule,
                    quote!(#receiver . #method_ident),
                    &format!("iterating `{binding}` (a `{ty}`)"),
                );
            }
        }
        if let Some(turbofish) = &call.turbofish {
            for arg in &turbofish.args {
                if let GenericArgument::Type(ty) = arg {
                    if let Some((rule, name)) = self.hashed_type(ty) {
                        self.report(rule, ty, &format!("a `{name}` built here"));
                    }
                }
            }
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        let biased = starts_with_biased(&mac.tokens);
        let candidates = self.scopes.resolve(&mac.path);
        if let Some((rule, unless_biased)) = self.table.macro_call(&candidates, biased) {
            let path = &mac.path;
            let bang = &mac.bang_token;
            let what = format!(
                "`{}!`{}",
                path_text(path),
                if unless_biased {
                    " without `biased;`"
                } else {
                    ""
                }
            );
            self.report(rule, quote!(#path #bang), &what);
        }
        for expr in macro_exprs(mac) {
            self.visit_expr(&expr);
        }
    }
}

/// Tokens that span from `start` to `end`, for an error on a range.
fn through(start: impl ToTokens, end: Span) -> TokenStream {
    let mut tokens = start.to_token_stream();
    tokens.extend(quote_spanned!(end=> _));
    tokens
}

/// A path as the user wrote it, without generic arguments.
fn path_text(path: &Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

/// `SCREAMING_CASE`: how statics are named.
fn is_screaming(name: &str) -> bool {
    name.chars().any(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `expr` is a plain name (a move of another binding).
fn is_plain_path(expr: &Expr) -> bool {
    matches!(peel_expr(expr), Expr::Path(ExprPath { qself: None, path, .. }) if path.get_ident().is_some())
}

/// `expr` without parentheses, invisible groups and `&` / `&mut`.
fn peel_expr(mut expr: &Expr) -> &Expr {
    loop {
        match expr {
            Expr::Paren(inner) => expr = &inner.expr,
            Expr::Group(inner) => expr = &inner.expr,
            Expr::Reference(inner) => expr = &inner.expr,
            _ => return expr,
        }
    }
}

/// `ty` without parentheses, invisible groups and references.
fn peel_type(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Paren(inner) => ty = &inner.elem,
            Type::Group(inner) => ty = &inner.elem,
            Type::Reference(inner) => ty = &inner.elem,
            _ => return ty,
        }
    }
}

#[cfg(test)]
mod tests;
