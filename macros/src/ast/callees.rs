//! The activities and child orchestrators an orchestrator's body calls: the
//! first argument of every `ctx.call(X, ..)`, `ctx.call_with_retry(X, ..)`,
//! `ctx.call_child(X, ..)` and `ctx.call_child_with_id(X, ..)`, where `X` is
//! a path. The expansion sorts activities from orchestrators by type.
//!
//! The generated `Orchestrator::activities` names each one again outside the
//! body, so a path that only resolves inside the body is left out: a name
//! bound in the body (a `let`, a closure or match binding, a parameter) or
//! declared there (a nested `fn`, `const`, `struct`, `mod`, ..). Calls under
//! `#[cfg]` are left out too, since the path may not exist without it. The
//! list is best effort (calls through another binding of the context, or
//! inside a macro whose input is not expressions, are not seen), which is
//! what the runtime expects of it.

use std::collections::BTreeSet;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::visit::{self, Visit};
use syn::{
    Arm, Attribute, Expr, ExprMethodCall, ExprPath, FieldValue, Ident, Item, ItemFn, Local, Macro,
    PatIdent, Path, StmtMacro, Token,
};

/// The paths `ctx` is called with, deduplicated by their text, in order of
/// first appearance.
pub(super) fn collect(item: &ItemFn, ctx: &Ident) -> Vec<Path> {
    let mut bound = Bindings::default();
    for arg in &item.sig.inputs {
        bound.visit_fn_arg(arg);
    }
    bound.visit_block(&item.block);
    let mut calls = Calls {
        ctx: ctx.unraw().to_string(),
        bound: bound.names,
        seen: BTreeSet::new(),
        paths: Vec::new(),
    };
    calls.visit_block(&item.block);
    calls.paths
}

/// Every name bound or declared anywhere in the body. Scopes are ignored:
/// a name shadowed anywhere is skipped everywhere, which only makes the
/// list shorter.
#[derive(Default)]
struct Bindings {
    names: BTreeSet<String>,
}

impl Bindings {
    fn insert(&mut self, ident: &Ident) {
        self.names.insert(ident.unraw().to_string());
    }
}

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
        self.insert(&pat.ident);
        visit::visit_pat_ident(self, pat);
    }

    fn visit_item(&mut self, item: &'ast Item) {
        let declared = match item {
            Item::Const(item) => Some(&item.ident),
            Item::Enum(item) => Some(&item.ident),
            Item::ExternCrate(item) => {
                Some(item.rename.as_ref().map_or(&item.ident, |(_, ident)| ident))
            }
            Item::Fn(item) => Some(&item.sig.ident),
            Item::Macro(item) => item.ident.as_ref(),
            Item::Mod(item) => Some(&item.ident),
            Item::Static(item) => Some(&item.ident),
            Item::Struct(item) => Some(&item.ident),
            Item::Trait(item) => Some(&item.ident),
            Item::TraitAlias(item) => Some(&item.ident),
            Item::Type(item) => Some(&item.ident),
            Item::Union(item) => Some(&item.ident),
            // A `use` brings in a path that resolves outside the body too.
            _ => None,
        };
        if let Some(ident) = declared {
            self.insert(ident);
        }
        visit::visit_item(self, item);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        for expr in macro_exprs(&mac.tokens) {
            self.visit_expr(&expr);
        }
    }
}

/// Finds the calls; see the module docs.
struct Calls {
    ctx: String,
    bound: BTreeSet<String>,
    seen: BTreeSet<String>,
    paths: Vec<Path>,
}

impl Calls {
    /// `X` in `ctx.call(X, ..)`, if it is a path that resolves outside the body.
    fn callee<'e>(&self, call: &'e ExprMethodCall) -> Option<&'e Path> {
        const CALLS: [&str; 4] = [
            "call",
            "call_with_retry",
            "call_child",
            "call_child_with_id",
        ];
        if !CALLS.iter().any(|m| call.method == m) {
            return None;
        }
        if !self.is_ctx(&call.receiver) {
            return None;
        }
        let Expr::Path(ExprPath {
            qself: None, path, ..
        }) = call.args.first()?
        else {
            return None;
        };
        if path.leading_colon.is_none() {
            let first = path.segments.first()?.ident.unraw().to_string();
            if first == "Self" || self.bound.contains(&first) {
                return None;
            }
        }
        Some(path)
    }

    /// Whether `expr` is the context: `ctx`, `(ctx)`, `&ctx`, `ctx.clone()`.
    fn is_ctx(&self, expr: &Expr) -> bool {
        super::is_context_expr(expr, &self.ctx)
    }
}

impl<'ast> Visit<'ast> for Calls {
    fn visit_expr_method_call(&mut self, call: &'ast ExprMethodCall) {
        if let Some(path) = self.callee(call) {
            if self.seen.insert(path.to_token_stream().to_string()) {
                self.paths.push(path.clone());
            }
        }
        visit::visit_expr_method_call(self, call);
    }

    fn visit_expr(&mut self, expr: &'ast Expr) {
        if !has_cfg(super::expr_attrs(expr)) {
            visit::visit_expr(self, expr);
        }
    }

    fn visit_local(&mut self, local: &'ast Local) {
        if !has_cfg(&local.attrs) {
            visit::visit_local(self, local);
        }
    }

    fn visit_arm(&mut self, arm: &'ast Arm) {
        if !has_cfg(&arm.attrs) {
            visit::visit_arm(self, arm);
        }
    }

    fn visit_field_value(&mut self, field: &'ast FieldValue) {
        if !has_cfg(&field.attrs) {
            visit::visit_field_value(self, field);
        }
    }

    fn visit_stmt_macro(&mut self, mac: &'ast StmtMacro) {
        if !has_cfg(&mac.attrs) {
            visit::visit_stmt_macro(self, mac);
        }
    }

    fn visit_item(&mut self, item: &'ast Item) {
        if !has_cfg(super::item_attrs(item)) {
            visit::visit_item(self, item);
        }
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        for expr in macro_exprs(&mac.tokens) {
            self.visit_expr(&expr);
        }
    }
}

/// A macro's input read as comma-separated expressions (`join!(a, b)`,
/// `vec![..]`, `format!(..)`), or nothing when it is not.
fn macro_exprs(tokens: &TokenStream) -> Vec<Expr> {
    syn::parse::Parser::parse2(
        Punctuated::<Expr, Token![,]>::parse_terminated,
        tokens.clone(),
    )
    .map(|exprs| exprs.into_iter().collect())
    .unwrap_or_default()
}

fn has_cfg(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident("cfg"))
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;
    use syn::{parse_quote, ItemFn};

    fn callees(item: &ItemFn) -> Vec<String> {
        let ctx = syn::Ident::new("ctx", proc_macro2::Span::call_site());
        super::collect(item, &ctx)
            .iter()
            .map(|path| path.to_token_stream().to_string())
            .collect()
    }

    #[test]
    fn finds_calls_everywhere_once() {
        let item: ItemFn = parse_quote! {
            async fn o(ctx: Context, x: u64) -> u64 {
                let a = ctx.call(double, x).await.unwrap();
                let b = ctx.call_with_retry(acts::check, a, policy()).await.unwrap();
                let again = ctx.call(double, b).await.unwrap();
                let all = join_all((0..3).map(|i| ctx.call(triple, i))).await;
                let later = async move { ctx.clone().call(::other::far, 1).await };
                tokio::join!(ctx.call(in_macro, 1), other(2));
                (&ctx).call(by_ref, 1);
                a + again + later.await
            }
        };
        assert_eq!(
            callees(&item),
            [
                "double",
                "acts :: check",
                "triple",
                ":: other :: far",
                "in_macro",
                "by_ref"
            ]
        );
    }

    #[test]
    fn skips_names_bound_or_declared_in_the_body() {
        let item: ItemFn = parse_quote! {
            async fn o(ctx: Context, param: u64) {
                let local = double;
                ctx.call(local, 1).await;
                ctx.call(param, 1).await;
                let f = |closure_arg| ctx.call(closure_arg, 1);
                if let Some(matched) = pick() { ctx.call(matched, 1).await; }
                fn nested() {}
                ctx.call(nested, 1).await;
                mod inner { pub struct act; }
                ctx.call(inner::act, 1).await;
                ctx.call(Self::act, 1).await;
                use crate::acts::imported;
                ctx.call(imported, 1).await;
            }
        };
        assert_eq!(callees(&item), ["imported"]);
    }

    #[test]
    fn ignores_other_receivers_non_paths_and_cfg() {
        let item: ItemFn = parse_quote! {
            async fn o(ctx: Context) {
                other.call(a, 1).await;
                ctx.call(pick(), 1).await;
                ctx.call(&b, 1).await;
                ctx.run(c, 1).await;
                ctx.call().await;
                #[cfg(feature = "x")]
                ctx.call(gated, 1).await;
                #[cfg(feature = "x")]
                let _ = ctx.call(gated_let, 1).await;
                match 1 { #[cfg(test)] _ => ctx.call(gated_arm, 1), _ => ctx.call(kept, 1) };
            }
        };
        assert_eq!(callees(&item), ["kept"]);
    }

    #[test]
    fn raw_identifiers_match_their_plain_form() {
        let item: ItemFn = parse_quote! {
            async fn o(r#ctx: Context) {
                ctx.call(r#type, 1).await;
                let r#local = 1;
                r#ctx.call(local, 1).await;
            }
        };
        assert_eq!(callees(&item), ["r#type"]);
    }
}
