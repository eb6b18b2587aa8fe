//! `#[activity]`: arguments → typed view → checks → expansion.

use proc_macro2::TokenStream;
use quote::quote;

use crate::args::Args;
use crate::ast::{Activity, Kind};
use crate::errors::Errors;
use crate::{ast, check, expand};

/// Expands `#[activity(args)] item`. Never panics: every mistake becomes a
/// `compile_error!` on its token, followed by the best code that still
/// compiles (the full expansion when the mistake is cosmetic, the original
/// item otherwise).
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = Args::parse(args, &mut errors);
    if let Some(v) = &args.version {
        errors.error_at(
            v,
            "only an orchestrator has versions: an activity runs the code deployed, with no history to keep",
        );
    }
    let mut item = match ast::parse_fn(item.clone(), Kind::Activity) {
        Ok(parsed) => parsed,
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };
    check::activity_body(&mut item, &mut errors);
    let activity = Activity::from_syn(&item);
    let mut expandable = check::signature(&item, Kind::Activity, &mut errors);
    expandable &= check::inputs(&activity.function.inputs, Kind::Activity, &mut errors);
    expandable &= check::output(&item.sig.output, Kind::Activity, &mut errors);
    let code = if expandable {
        expand::activity(&activity, &args)
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
    fn one_input_plain_output() {
        let out = expansion(
            quote!(),
            quote! {
                /// Doubles.
                pub async fn double(x: u64) -> u64 { x * 2 }
            },
        );
        assert!(
            out.contains("# [doc = r\" Doubles.\"] # [allow (non_camel_case_types)]"),
            "{out}"
        );
        assert!(out.contains("pub struct double ;"), "{out}");
        assert!(
            out.contains("pub async fn run (self , x : u64) -> u64 { x * 2 }"),
            "{out}"
        );
        assert!(
            out.contains("impl :: durable :: Activity for double"),
            "{out}"
        );
        assert!(out.contains("type Input = u64 ;"), "{out}");
        assert!(out.contains("type Output = u64 ;"), "{out}");
        assert!(out.contains("type Error = :: durable :: Never ;"), "{out}");
        assert!(
            out.contains("const NAME : & 'static str = \"double\" ;"),
            "{out}"
        );
        assert!(
            out.contains(":: core :: result :: Result :: Ok (self . run (input) . await)"),
            "{out}"
        );
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn no_input_no_output() {
        let out = expansion(
            quote!(),
            quote!(
                async fn tick() {}
            ),
        );
        assert!(out.contains("type Input = () ;"), "{out}");
        assert!(out.contains("type Output = () ;"), "{out}");
        assert!(
            out.contains("fn invoke (self , () : < Self as :: durable :: Activity > :: Input)"),
            "{out}"
        );
        assert!(
            out.contains("self . run () . await ; :: core :: result :: Result :: Ok (())"),
            "{out}"
        );
    }

    #[test]
    fn several_inputs_make_a_tuple() {
        let out = expansion(
            quote!(),
            quote!(
                async fn add(a: u64, (b, c): (u8, u8), mut d: String) -> u64 {
                    a
                }
            ),
        );
        assert!(
            out.contains("type Input = (u64 , (u8 , u8) , String) ;"),
            "{out}"
        );
        assert!(
            out.contains("(arg0 , arg1 , arg2) : < Self as :: durable :: Activity > :: Input"),
            "{out}"
        );
        assert!(out.contains("self . run (arg0 , arg1 , arg2)"), "{out}");
        assert!(
            out.contains("fn run (self , a : u64 , (b , c) : (u8 , u8) , mut d : String)"),
            "{out}"
        );
    }

    #[test]
    fn result_output_splits_into_output_and_error() {
        let out = expansion(
            quote!(name = "Check"),
            quote!(
                async fn check(x: u64) -> Result<u64, String> {
                    Ok(x)
                }
            ),
        );
        assert!(out.contains("type Output = u64 ;"), "{out}");
        assert!(out.contains("type Error = String ;"), "{out}");
        assert!(
            out.contains("const NAME : & 'static str = \"Check\" ;"),
            "{out}"
        );
        assert!(
            out.contains(":: durable :: __private :: Box :: pin (self . run (input))"),
            "{out}"
        );
    }

    #[test]
    fn attributes_visibility_and_raw_names() {
        let out = expansion(
            quote!(),
            quote! {
                #[cfg(feature = "x")]
                #[inline]
                pub(crate) async fn r#type() {
                    #![allow(unused)]
                }
            },
        );
        assert_eq!(out.matches("# [cfg (feature = \"x\")]").count(), 3, "{out}");
        assert!(out.contains("pub (crate) struct r#type ;"), "{out}");
        assert!(
            out.contains("# [inline] pub (crate) async fn run (self) { # ! [allow (unused)] }"),
            "{out}"
        );
        assert!(out.contains("\"type\""), "{out}");
    }

    #[test]
    fn a_cosmetic_mistake_still_expands() {
        let out = expansion(
            quote!(nme = "x"),
            quote!(
                fn double(x: u64) -> u64 {
                    x * 2
                }
            ),
        );
        assert!(
            out.contains("compile_error ! { \"expected `name` or `version`\" }"),
            "{out}"
        );
        assert!(out.contains("add `async` before `fn`"), "{out}");
        assert!(out.contains("async fn run (self , x : u64)"), "{out}");
        assert!(
            out.contains("impl :: durable :: Activity for double"),
            "{out}"
        );
    }

    #[test]
    fn a_shape_mistake_gives_back_the_item() {
        let out = expansion(
            quote!(),
            quote!(
                async fn a<T>(&self, x: &str) -> T {
                    todo!()
                }
            ),
        );
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        assert!(
            out.contains("# [allow (dead_code)] async fn a < T > (x : & str) -> T"),
            "{out}"
        );
        assert!(!out.contains("durable"), "{out}");
    }

    #[test]
    fn not_a_fn() {
        let out = expansion(
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert!(out.contains("`#[activity]` goes on an `async fn`"), "{out}");
        assert!(out.contains("struct S ;"), "{out}");
    }

    #[test]
    fn an_allow_attribute_in_an_activity_is_an_error_and_is_stripped() {
        let out = expansion(
            quote!(),
            quote! {
                async fn a() -> u64 {
                    #[durable::allow(wall_clock, reason = "x")]
                    let t = 1;
                    t
                }
            },
        );
        assert_eq!(out.matches("compile_error").count(), 1, "{out}");
        assert!(
            out.contains("has no effect in an activity, which may do anything: remove it"),
            "{out}"
        );
        assert!(!out.contains("durable :: allow"), "{out}");
        assert!(out.contains("impl :: durable :: Activity for a"), "{out}");
    }
}
