//! What the checker reads inside a macro call: its input as expressions,
//! when it reads as a list of them or as `select!` branches, so that
//! `println!("{:?}", SystemTime::now())` is checked like any call.

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Macro, Pat, Token};

/// The expressions in a macro's input, when it reads as a list of them
/// (`format!`, `vec!`, `assert!`, `join!`, ..) or as `select!` branches; as
/// many as parse.
pub(super) fn macro_exprs(mac: &Macro) -> Vec<Expr> {
    let is_select = mac
        .path
        .segments
        .last()
        .is_some_and(|last| last.ident == "select" || last.ident == "select_biased");
    if is_select {
        if let Ok(exprs) = select_branches.parse2(mac.tokens.clone()) {
            return exprs;
        }
    }
    expr_list.parse2(mac.tokens.clone()).unwrap_or_default()
}

/// `a, b; c => d`: expressions separated by `,`, `;` or `=>`, up to the
/// first thing that is not one.
fn expr_list(input: ParseStream<'_>) -> syn::Result<Vec<Expr>> {
    let mut exprs = Vec::new();
    while !input.is_empty() {
        let Ok(expr) = input.parse::<Expr>() else {
            break;
        };
        exprs.push(expr);
        let separated = input.parse::<Option<Token![,]>>()?.is_some()
            || input.parse::<Option<Token![;]>>()?.is_some()
            || input.parse::<Option<Token![=>]>>()?.is_some();
        if !separated {
            break;
        }
    }
    input.parse::<TokenStream>()?;
    Ok(exprs)
}

/// The branches of `tokio::select!` / `futures::select!`:
/// `[biased;] pat = future [, if condition] => handler[,]`, and
/// `else` / `default` / `complete` `=> handler`.
fn select_branches(input: ParseStream<'_>) -> syn::Result<Vec<Expr>> {
    let mut exprs = Vec::new();
    if starts_with_biased(&input.fork().parse::<TokenStream>()?) {
        input.parse::<TokenTree>()?;
        input.parse::<Token![;]>()?;
    }
    while !input.is_empty() {
        let fallback = input.peek(Token![else])
            || (input.peek(syn::Ident) && input.peek2(Token![=>]) && {
                let ident: syn::Ident = input.fork().parse()?;
                ident == "default" || ident == "complete"
            });
        if fallback {
            input.parse::<TokenTree>()?;
        } else {
            Pat::parse_multi_with_leading_vert(input)?;
            input.parse::<Token![=]>()?;
            exprs.push(input.parse()?);
            if input.peek(Token![,]) && input.peek2(Token![if]) {
                input.parse::<Token![,]>()?;
                input.parse::<Token![if]>()?;
                exprs.push(input.parse()?);
            }
        }
        input.parse::<Token![=>]>()?;
        exprs.push(input.parse()?);
        input.parse::<Option<Token![,]>>()?;
    }
    Ok(exprs)
}

/// Whether a macro's input starts with `biased;`.
pub(super) fn starts_with_biased(tokens: &TokenStream) -> bool {
    let mut tokens = tokens.clone().into_iter();
    matches!(
        (tokens.next(), tokens.next()),
        (Some(TokenTree::Ident(ident)), Some(TokenTree::Punct(punct)))
            if ident == "biased" && punct.as_char() == ';'
    )
}
