//! `#[orchestrator]`: arguments → typed view → checks → expansion.

use proc_macro2::TokenStream;
use quote::quote;

use crate::args::Args;
use crate::ast::{Kind, Orchestrator};
use crate::errors::Errors;
use crate::{ast, check, expand};

/// Expands `#[orchestrator(args)] item`. Never panics: every mistake becomes
/// a `compile_error!` on its token, followed by the best code that still
/// compiles (the full expansion when the mistake is cosmetic, the original
/// item otherwise).
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = Args::parse(args, &mut errors);
    let item = match ast::parse_fn(item.clone(), Kind::Orchestrator) {
        Ok(parsed) => parsed,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };
    // Versions of one orchestrator share its stored name, and the function
    // of an old version is renamed (`checkout_v1`): a version without a
    // pinned name would silently become another orchestrator.
    if let (Some(version), None) = (&args.version, &args.name) {
        let fn_name = item.sig.ident.to_string();
        errors.error_at(
            version,
            format!(
                "a versioned orchestrator pins its stored name, which its versions share and a rename must keep: \
                 write `#[orchestrator(name = \"{fn_name}\", version = {})]`",
                version.base10_digits()
            ),
        );
    }
    let orchestrator = Orchestrator::from_syn(&item);
    let mut expandable = check::signature(&item, Kind::Orchestrator, &mut errors);
    expandable &= check::context(&orchestrator, &mut errors);
    expandable &= check::inputs(
        &orchestrator.function.inputs,
        Kind::Orchestrator,
        &mut errors,
    );
    expandable &= check::output(&item.sig.output, Kind::Orchestrator, &mut errors);
    check::orchestrator_body(&orchestrator, &mut errors);
    // What is emitted is the item without the checker's own attributes.
    let mut item = item.clone();
    check::strip_allows(&mut item);
    let orchestrator = Orchestrator::from_syn(&item);
    let code = if expandable {
        expand::orchestrator(&orchestrator, &args)
    } else {
        expand::fallback(&item)
    };
    let errors = errors.to_compile_errors();
    quote!(#errors #code)
}

#[cfg(test)]
mod tests {
    use super::expand;
    use quote::quote;

    /// The expansion, checked to parse as a file, as token text.
    fn expansion(args: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
        let tokens = expand(args, item);
        let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
        quote!(#file).to_string()
    }

    #[test]
    fn the_issue_example() {
        let out = expansion(
            quote!(),
            quote! {
                /// A pipeline.
                async fn pipeline(ctx: Context, x: u64) -> Result<u64, String> {
                    let a = ctx.call(double, x).await.map_err(|e| e.to_string())?;
                    let b = ctx.call(check, a).await.map_err(|e| e.to_string())?;
                    let parts = durable::join_all((0..10).map(|i| ctx.call(double, i))).await;
                    Ok(a + b)
                }
            },
        );
        assert!(
            out.contains("# [doc = r\" A pipeline.\"] # [allow (non_camel_case_types)]"),
            "{out}"
        );
        assert!(out.contains("struct pipeline ;"), "{out}");
        assert!(out.contains("# [doc (hidden)]"), "{out}");
        assert!(
            out.contains(
                "async fn run (self , ctx : Context , x : u64) -> Result < u64 , String >"
            ),
            "{out}"
        );
        assert!(
            out.contains("impl :: durable :: Orchestrator for pipeline"),
            "{out}"
        );
        assert!(out.contains("type Input = u64 ;"), "{out}");
        assert!(
            out.contains("type Output = Result < u64 , String > ;"),
            "{out}"
        );
        assert!(
            out.contains("const NAME : & 'static str = \"pipeline\" ;"),
            "{out}"
        );
        assert!(out.contains("fn invoke (self , ctx : :: durable :: Context , input : < Self as :: durable :: Orchestrator > :: Input)"), "{out}");
        assert!(
            out.contains(":: durable :: __private :: Box :: pin (self . run (ctx , input))"),
            "{out}"
        );
        assert!(
            out.contains("(& :: durable :: __private :: IsFailure (output)) . is_failure ()"),
            "{out}"
        );
        assert!(
            out.contains("names . extend ((& Callee (double)) . stored_name ()) ; names . extend ((& Callee (check)) . stored_name ()) ; names"),
            "{out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn no_inputs_no_output_no_calls() {
        let out = expansion(
            quote!(name = "Idle"),
            quote!(
                pub async fn idle(_ctx: durable::Context) {}
            ),
        );
        assert!(out.contains("type Input = () ;"), "{out}");
        assert!(out.contains("type Output = () ;"), "{out}");
        assert!(
            out.contains("const NAME : & 'static str = \"Idle\" ;"),
            "{out}"
        );
        assert!(out.contains("self . run (ctx ,)"), "{out}");
        assert!(out.contains("fn activities () -> :: durable :: __private :: Vec < & 'static str > { :: durable :: __private :: Vec :: new () }"), "{out}");
    }

    #[test]
    fn several_inputs_make_a_tuple() {
        let out = expansion(
            quote!(),
            quote!(
                async fn o(ctx: Context, a: u64, b: String) {}
            ),
        );
        assert!(out.contains("type Input = (u64 , String) ;"), "{out}");
        assert!(out.contains("self . run (ctx , arg0 , arg1)"), "{out}");
    }

    #[test]
    fn a_missing_context_gives_back_the_item() {
        let out = expansion(
            quote!(),
            quote!(
                async fn o(x: u64) -> u64 {
                    x
                }
            ),
        );
        assert!(
            out.contains("add `ctx: Context` before this parameter"),
            "{out}"
        );
        assert!(
            out.contains("# [allow (dead_code)] async fn o (x : u64) -> u64 { x }"),
            "{out}"
        );
        assert!(!out.contains("Orchestrator for"), "{out}");
    }

    #[test]
    fn every_independent_error_at_once() {
        let out = expansion(
            quote!(name = "a", name = "b"),
            quote!(
                fn o(_: Context) {}
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        assert!(
            out.contains("impl :: durable :: Orchestrator for o"),
            "{out}"
        );
    }

    #[test]
    fn not_a_fn() {
        let out = expansion(
            quote!(),
            quote!(
                enum E {}
            ),
        );
        assert!(
            out.contains("`#[orchestrator]` goes on an `async fn`"),
            "{out}"
        );
        assert!(out.contains("enum E { }"), "{out}");
    }

    #[test]
    fn determinism_errors_come_with_the_full_expansion() {
        let out = expansion(
            quote!(),
            quote! {
                #[durable::allow(io, reason = "a fixture")]
                async fn o(ctx: Context) -> u64 {
                    #[durable::allow(wall_clock, reason = "logged only")]
                    let t = SystemTime::now();
                    let _ = std::fs::read("x");
                    rand::random()
                }
            },
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(
            out.contains("[durable::randomness] `rand::random` draws fresh randomness"),
            "{out}"
        );
        assert!(!out.contains("durable :: allow"), "{out}");
        assert!(
            out.contains("impl :: durable :: Orchestrator for o"),
            "{out}"
        );
        assert!(out.contains("let t = SystemTime :: now () ;"), "{out}");
    }

    #[test]
    fn allow_attributes_are_stripped_from_the_fallback_too() {
        let out = expansion(
            quote!(),
            quote! {
                async fn o<T>(ctx: Context) {
                    #[durable::allow(wall_clock, reason = "logged only")]
                    let t = SystemTime::now();
                }
            },
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(
            out.contains("# [allow (dead_code)] async fn o < T >"),
            "{out}"
        );
        assert!(!out.contains("durable :: allow"), "{out}");
    }
}
