//! Code generation: the unit struct named like the fn, its inherent `run`
//! holding the original body, and the runtime trait impl that calls `run`.
//!
//! The user's types go into the trait's associated types with their own
//! spans, so rustc's error for a type that is not `Serialize +
//! DeserializeOwned + Send + 'static` lands on that type (for several
//! inputs, on the parameter list) and names the role it fails
//! (`Activity::Input`, ..). A separate assertion would only repeat it.
//!
//! Generated code names only `::durable::..` and `::core::..` paths, so
//! users need no other dependency, and stays clean under the user's
//! `#![deny(warnings, clippy::pedantic)]`.

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr, Type};

use crate::args::Args;
use crate::ast::{Activity, ActivityOutput, Function, Orchestrator};

/// `#[activity]`'s expansion.
pub(crate) fn activity(activity: &Activity<'_>, args: &Args) -> TokenStream {
    let function = &activity.function;
    let ident = function.ident();
    let cfgs = &function.cfgs;
    let name = stored_name(function, args);
    let input = Input::new(function);
    let input_ty = &input.ty;
    let input_pat = &input.pat;
    let run_args = &input.run_args;

    let (output_ty, error_ty, invoke_body) = match &activity.output {
        ActivityOutput::Unit => (
            quote!(()),
            quote!(::durable::Never),
            quote! {
                ::durable::__private::Box::pin(async move {
                    self.run(#run_args).await;
                    ::core::result::Result::Ok(())
                })
            },
        ),
        ActivityOutput::Value(ty) => (
            ty.to_token_stream(),
            quote!(::durable::Never),
            quote! {
                ::durable::__private::Box::pin(async move {
                    ::core::result::Result::Ok(self.run(#run_args).await)
                })
            },
        ),
        // Spanned on the return type: if the written `Result` is not
        // `core::result::Result`, rustc's mismatch points at it.
        ActivityOutput::Result { ty, ok, err } => (
            ok.to_token_stream(),
            err.to_token_stream(),
            quote_spanned! {ty.span()=>
                ::durable::__private::Box::pin(self.run(#run_args))
            },
        ),
    };

    let unit_struct = unit_struct(function);
    let run_doc = format!(
        " Runs the body of the activity `{}` directly, without a runtime (in a unit test, say): `{}.run(..).await`.",
        name.value(),
        ident.unraw()
    );
    let run = run_method(function, &quote!(#[doc = #run_doc]));
    quote! {
        #unit_struct
        #run
        #(#cfgs)*
        impl ::durable::Activity for #ident {
            type Input = #input_ty;
            type Output = #output_ty;
            type Error = #error_ty;
            const NAME: &'static str = #name;
            fn invoke(
                self,
                #input_pat: <Self as ::durable::Activity>::Input
            ) -> ::durable::BoxFuture<::core::result::Result<
                <Self as ::durable::Activity>::Output,
                <Self as ::durable::Activity>::Error
            >> {
                #invoke_body
            }
            fn is_retryable(error: &<Self as ::durable::Activity>::Error) -> bool {
                // Autoref dispatch: the error type's `Retryable` answer when
                // it has one, `true` otherwise.
                use ::durable::__private::{RetryableByDefault as _, RetryableByTrait as _};
                (&::durable::__private::IsRetryable(error)).is_retryable()
            }
        }
    }
}

/// `#[orchestrator]`'s expansion; the checker made sure the first parameter
/// is the context.
pub(crate) fn orchestrator(orchestrator: &Orchestrator<'_>, args: &Args) -> TokenStream {
    let function = &orchestrator.function;
    let ident = function.ident();
    let cfgs = &function.cfgs;
    let name = stored_name(function, args);
    let version = args
        .version
        .as_ref()
        .map_or_else(|| quote!(1), |v| quote!(#v));
    let input = Input::new(function);
    let input_ty = &input.ty;
    let input_pat = &input.pat;
    let run_args = &input.run_args;
    let output_ty = orchestrator
        .output
        .map_or_else(|| quote!(()), ToTokens::to_token_stream);

    // Spanned on the user's context type: if it is not `::durable::Context`,
    // rustc's mismatch points at it.
    let context_arg = orchestrator.context.as_ref().map_or_else(
        || quote!(ctx),
        |context| quote_spanned!(context.param.ty.span()=> ctx),
    );
    let activities = callee_names(&orchestrator.callees, &quote!(::durable::Activity));
    let children = callee_names(&orchestrator.callees, &quote!(::durable::Orchestrator));
    let child_versions = callee_versions(&orchestrator.callees);
    let unit_struct = unit_struct(function);
    // Hidden: it needs a `Context`, which only the runtime makes.
    let run = run_method(function, &quote!(#[doc(hidden)]));
    quote! {
        #unit_struct
        #run
        #(#cfgs)*
        impl ::durable::Orchestrator for #ident {
            type Input = #input_ty;
            type Output = #output_ty;
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            fn invoke(
                self,
                ctx: ::durable::Context,
                #input_pat: <Self as ::durable::Orchestrator>::Input
            ) -> ::durable::BoxFuture<<Self as ::durable::Orchestrator>::Output> {
                ::durable::__private::Box::pin(self.run(#context_arg, #run_args))
            }
            fn is_failure(output: &<Self as ::durable::Orchestrator>::Output) -> bool {
                // Autoref dispatch: `ResultFailure` when the output is a
                // `Result`, `ValueFailure` otherwise.
                use ::durable::__private::{ResultFailure as _, ValueFailure as _};
                (&::durable::__private::IsFailure(output)).is_failure()
            }
            fn activities() -> ::durable::__private::Vec<&'static str> {
                #activities
            }
            fn children() -> ::durable::__private::Vec<&'static str> {
                #children
            }
            fn child_versions() -> ::durable::__private::Vec<(&'static str, u32)> {
                #child_versions
            }
        }
    }
}

/// The original item, for when the fn cannot be expanded: the user keeps
/// one real error (and rust-analyzer keeps working) instead of a cascade.
/// What would add errors of its own outside an `impl` or on an `async fn`
/// (a receiver, a variadic, `const`, an ABI) is dropped.
pub(crate) fn fallback(item: &ItemFn) -> TokenStream {
    let mut item = item.clone();
    item.sig.inputs = item
        .sig
        .inputs
        .into_pairs()
        .filter(|pair| matches!(pair.value(), FnArg::Typed(_)))
        .collect();
    item.sig.variadic = None;
    item.sig.constness = None;
    item.sig.abi = None;
    quote! {
        // Only an error is reported for this fn; do not add a warning.
        #[allow(dead_code)]
        #item
    }
}

/// The body of `Orchestrator::activities` (`kind` is `Activity`) or
/// `Orchestrator::children` (`kind` is `Orchestrator`): the stored name of
/// each callee of that kind.
///
/// Autoref dispatch leaves out a callee of the other kind, or of neither:
/// its call in the body is already the one error to report.
fn callee_names(callees: &[syn::Path], kind: &TokenStream) -> TokenStream {
    callee_list(
        callees,
        kind,
        &quote!(&'static str),
        &quote!(<A as #kind>::NAME),
    )
}

/// The stored names and versions of the orchestrators among `callees`.
fn callee_versions(callees: &[syn::Path]) -> TokenStream {
    let kind = quote!(::durable::Orchestrator);
    callee_list(
        callees,
        &kind,
        &quote!((&'static str, u32)),
        &quote!((<A as #kind>::NAME, <A as #kind>::VERSION)),
    )
}

/// What `value` says of each of `callees` that implements `kind`: autoref
/// dispatch keeps the others out without naming them.
fn callee_list(
    callees: &[syn::Path],
    kind: &TokenStream,
    item: &TokenStream,
    value: &TokenStream,
) -> TokenStream {
    if callees.is_empty() {
        return quote!(::durable::__private::Vec::new());
    }
    quote! {
        // Only its type is used.
        #[allow(dead_code)]
        struct Callee<T>(T);
        trait NamedCallee {
            fn stored_name(&self) -> ::core::option::Option<#item>;
        }
        impl<A: #kind> NamedCallee for Callee<A> {
            fn stored_name(&self) -> ::core::option::Option<#item> {
                ::core::option::Option::Some(#value)
            }
        }
        trait OtherCallee {
            fn stored_name(&self) -> ::core::option::Option<#item>;
        }
        impl<T> OtherCallee for &Callee<T> {
            fn stored_name(&self) -> ::core::option::Option<#item> {
                ::core::option::Option::None
            }
        }
        let mut names = ::durable::__private::Vec::new();
        #(names.extend((&Callee(#callees)).stored_name());)*
        names
    }
}

/// The stored name: `name = ".."`, else the fn's name (without `r#`).
fn stored_name(function: &Function<'_>, args: &Args) -> LitStr {
    args.name.clone().unwrap_or_else(|| {
        let ident = function.ident();
        LitStr::new(&ident.unraw().to_string(), ident.span())
    })
}

/// How the parameters become the trait's `Input` and back.
struct Input {
    /// `()`, the one type, or a tuple of the types.
    ty: TokenStream,
    /// The pattern of `invoke`'s input parameter.
    pat: TokenStream,
    /// The arguments `invoke` passes to `run`.
    run_args: TokenStream,
}

impl Input {
    fn new(function: &Function<'_>) -> Self {
        let types: Vec<&Type> = function.inputs.iter().map(|input| &*input.ty).collect();
        match types.as_slice() {
            [] => Self {
                ty: quote!(()),
                pat: quote!(()),
                run_args: TokenStream::new(),
            },
            [ty] => Self {
                ty: ty.to_token_stream(),
                pat: quote!(input),
                run_args: quote!(input),
            },
            types => {
                let names: Vec<_> = (0..types.len()).map(|i| format_ident!("arg{i}")).collect();
                // Spanned on the fn's parameter list, so that rustc's error
                // for a non-serde element lands there, not on the attribute.
                let params = function.item.sig.paren_token.span.join();
                Self {
                    ty: quote_spanned!(params=> (#(#types),*)),
                    pat: quote!((#(#names),*)),
                    run_args: quote!(#(#names),*),
                }
            }
        }
    }
}

/// The unit struct that names the fn: keeps its name, visibility, docs and
/// cfgs.
fn unit_struct(function: &Function<'_>) -> TokenStream {
    let ident = function.ident();
    let vis = &function.item.vis;
    let docs = &function.docs;
    let cfgs = &function.cfgs;
    quote! {
        #(#cfgs)*
        #(#docs)*
        // The value stands for the fn, so it keeps the fn's snake_case name.
        #[allow(non_camel_case_types)]
        #[derive(
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::fmt::Debug,
            ::core::default::Default,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash
        )]
        #vis struct #ident;
    }
}

/// `impl name { async fn run(self, params..) -> ret { body } }`, with the
/// fn's own parameters, return type, body and remaining attributes, after
/// `doc` (the method's doc attribute).
fn run_method(function: &Function<'_>, doc: &TokenStream) -> TokenStream {
    let item = function.item;
    let ident = function.ident();
    let vis = &item.vis;
    let cfgs = &function.cfgs;
    let rest = &function.rest;
    let inner = &function.inner;
    let params = item.sig.inputs.iter();
    let output = &item.sig.output;
    let asyncness = item.sig.asyncness.unwrap_or_default();
    let fn_token = item.sig.fn_token;
    let stmts = &item.block.stmts;
    let mut body = Group::new(Delimiter::Brace, quote!(#(#inner)* #(#stmts)*));
    body.set_span(item.block.brace_token.span.join());
    quote! {
        #(#cfgs)*
        impl #ident {
            #doc
            // `async` is the contract even when the body does not await; the
            // fn's docs (where `# Errors` and `# Panics` go) are on the struct.
            #[allow(
                clippy::unused_async,
                clippy::missing_errors_doc,
                clippy::missing_panics_doc
            )]
            #(#rest)*
            #vis #asyncness #fn_token run(self #(, #params)*) #output #body
        }
    }
}
