//! `#[entity]` on an `impl` block: its methods taking `self` become the
//! entity's operations; the expansion implements `durable::Entity` and makes
//! the typed proxy (`<Type>Ops<M>`) whose methods are the operations.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::{FnArg, ImplItem, ItemImpl, Pat, ReturnType, Type};

use crate::args::Args;
use crate::errors::Errors;

/// Method names the proxy itself uses.
const RESERVED: [&str; 2] = ["signal", "signal_at"];

/// One operation, as the expansion needs it.
struct Op {
    name: syn::Ident,
    read: bool,
    takes_ctx: bool,
    args: Vec<(syn::Ident, Type)>,
    output: Type,
}

/// `tokens` with every `Self` replaced by `with`: the proxy is another
/// type, where `Self` would mean the proxy.
fn replace_self(tokens: TokenStream, with: &TokenStream) -> TokenStream {
    tokens
        .into_iter()
        .flat_map(|tt| match tt {
            proc_macro2::TokenTree::Ident(id) if id == "Self" => with.clone(),
            proc_macro2::TokenTree::Group(g) => {
                let mut group =
                    proc_macro2::Group::new(g.delimiter(), replace_self(g.stream(), with));
                group.set_span(g.span());
                quote!(#group)
            }
            other => quote!(#other),
        })
        .collect()
}

/// Whether `ty` is `&mut EntityContext` (any path ending so).
fn is_ctx(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    matches!(&*r.elem, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "EntityContext"))
}

fn op_of(f: &syn::ImplItemFn, errors: &mut Errors) -> Option<Op> {
    let sig = &f.sig;
    let receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(r)) => r,
        // An associated function (a constructor, a helper): not an operation.
        _ => return None,
    };
    let mut ok = true;
    if receiver.reference.is_none() {
        errors.error_at(
            receiver,
            "an entity operation takes `&mut self` (a change) or `&self` (a read), not `self`",
        );
        ok = false;
    }
    if let Some(a) = &sig.asyncness {
        errors.error_at(
            a,
            "an entity operation is not `async`: it changes state in memory and returns; \
             call activities or orchestrations for slow work",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        errors.error_at(
            &sig.generics,
            "an entity operation cannot be generic: its arguments travel as a message",
        );
        ok = false;
    }
    let name = sig.ident.clone();
    if RESERVED.contains(&name.to_string().as_str()) {
        errors.error_at(
            &name,
            format!("`{name}` is the proxy's own method: give the operation another name"),
        );
        ok = false;
    }
    let mut takes_ctx = false;
    let mut args = Vec::new();
    for (i, input) in sig.inputs.iter().skip(1).enumerate() {
        let FnArg::Typed(pt) = input else { continue };
        if i == 0 && is_ctx(&pt.ty) {
            takes_ctx = true;
            continue;
        }
        if matches!(&*pt.ty, Type::Reference(_)) {
            errors.error_at(
                &pt.ty,
                "an entity operation's arguments travel as a message: take an owned type \
                 (`String`, not `&str`)",
            );
            ok = false;
            continue;
        }
        match &*pt.pat {
            Pat::Ident(id) => args.push((id.ident.clone(), (*pt.ty).clone())),
            other => {
                // A pattern: bound to a fresh name, destructured by the body.
                let _ = other;
                args.push((format_ident!("__arg{}", i), (*pt.ty).clone()));
            }
        }
    }
    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    ok.then_some(Op {
        read: receiver.mutability.is_none(),
        name,
        takes_ctx,
        args,
        output,
    })
}

/// Expands `#[entity(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::new();
    let args = Args::parse(args, &mut errors);
    if let Some(v) = &args.version {
        errors.error_at(
            v,
            "only an orchestrator has versions: an entity runs the code deployed, with no history to keep",
        );
    }
    let imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(imp) => imp,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[entity]` goes on an `impl` block of the entity's type: \
                 `#[entity] impl Account { fn deposit(&mut self, amount: i64) { .. } }`",
            );
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            return tokens;
        }
    };
    if let Some((_, path, _)) = &imp.trait_ {
        errors.error_at(
            path,
            "`#[entity]` goes on the type's own `impl` block, not a trait impl",
        );
    }
    if !imp.generics.params.is_empty() {
        errors.error_at(&imp.generics, "an entity type cannot be generic");
    }
    let ty = &imp.self_ty;
    let Type::Path(path) = &**ty else {
        errors.error_at(ty, "`#[entity]` needs a named type");
        let errors = errors.to_compile_errors();
        return quote!(#errors #imp);
    };
    let Some(last) = path.path.segments.last() else {
        return quote!(#imp);
    };
    let type_ident = &last.ident;
    let stored = args
        .name
        .as_ref()
        .map_or_else(|| type_ident.to_string(), syn::LitStr::value);
    if stored.contains('@') {
        if let Some(name) = &args.name {
            errors.error_at(
                name,
                "an entity's stored name cannot hold `@`: it separates the type from the key in the entity's id",
            );
        }
    }
    let ops_ty = format_ident!("{}Ops", type_ident);
    let mut ops = Vec::new();
    for item in &imp.items {
        if let ImplItem::Fn(f) = item {
            if let Some(op) = op_of(f, &mut errors) {
                ops.push(op);
            }
        }
    }
    if ops.is_empty() && errors.to_compile_errors().is_empty() {
        errors.error_at(
            ty,
            "an entity needs at least one operation: a method taking `&mut self` or `&self`",
        );
    }
    let errors = errors.to_compile_errors();
    if !errors.is_empty() {
        return quote!(#errors #imp);
    }
    let self_ty = quote!(#ty);
    let methods = ops.iter().map(|op| {
        let name = &op.name;
        let op_name = name.to_string();
        let out = replace_self(op.output.to_token_stream(), &self_ty);
        let params = op.args.iter().map(|(n, t)| {
            let t = replace_self(t.to_token_stream(), &self_ty);
            quote!(#n: #t)
        });
        let names = op.args.iter().map(|(n, _)| n);
        let doc = format!("Operation `{op_name}` of the entity.");
        quote! {
            #[doc = #doc]
            #[track_caller]
            #[allow(clippy::unused_unit)]
            pub fn #name(self, #(#params),*) -> <__M as ::durable::entity::Mode>::Out<#out> {
                <__M as ::durable::entity::Mode>::op::<#out, _>(self.0, #op_name, &(#(#names,)*))
            }
        }
    });
    let arms = ops.iter().map(|op| {
        let name = &op.name;
        let op_name = name.to_string();
        let names: Vec<_> = op.args.iter().map(|(n, _)| n).collect();
        let types = op.args.iter().map(|(_, t)| t);
        let call = if op.takes_ctx {
            quote!(Self::#name(self, __ctx, #(#names),*))
        } else {
            quote!(Self::#name(self, #(#names),*))
        };
        quote! {
            #op_name => {
                let (#(#names,)*): (#(#types,)*) =
                    ::durable::entity::__decode_args(__input, #stored, __op)?;
                let __out = #call;
                ::durable::entity::__encode_result(&__out, __ctx, #stored, __op)
            }
        }
    });
    let checks = ops.iter().map(|op| {
        let op_name = op.name.to_string();
        let types = op.args.iter().map(|(_, t)| t);
        quote! {
            #op_name => {
                let _: (#(#types,)*) = ::durable::entity::__decode_args(__input, #stored, __op)?;
                ::core::result::Result::Ok(())
            }
        }
    });
    let reads: Vec<String> = ops
        .iter()
        .filter(|o| o.read)
        .map(|o| o.name.to_string())
        .collect();
    let is_read = if reads.is_empty() {
        quote!(false)
    } else {
        quote!(matches!(__op, #(#reads)|*))
    };
    let ops_doc = format!(
        "The operations of entity `{type_ident}` as methods, in a mode (made by `#[durable::entity]`)."
    );
    quote! {
        #imp

        #[doc = #ops_doc]
        pub struct #ops_ty<__M>(__M);

        impl<__M> ::core::convert::From<__M> for #ops_ty<__M> {
            fn from(mode: __M) -> Self {
                Self(mode)
            }
        }

        #[allow(private_interfaces)]
        impl<__M: ::durable::entity::Mode> #ops_ty<__M> {
            #(#methods)*
        }

        impl<__M: ::durable::entity::Signals> #ops_ty<__M> {
            /// One-way: each operation is sent, nobody waits for its result.
            pub fn signal(self) -> #ops_ty<<__M as ::durable::entity::Signals>::Signal> {
                #ops_ty(::durable::entity::Signals::signal(self.0))
            }

            /// One-way, applied not before `at`.
            pub fn signal_at(
                self,
                at: ::std::time::SystemTime,
            ) -> #ops_ty<<__M as ::durable::entity::Signals>::Signal> {
                #ops_ty(::durable::entity::Signals::signal_at(self.0, at))
            }
        }

        impl ::durable::Entity for #ty {
            const NAME: &'static str = #stored;
            type Ops<__M> = #ops_ty<__M>;

            fn __is_read(__op: &str) -> bool {
                #is_read
            }

            fn __check(
                __op: &str,
                __input: &::durable::history::Payload,
            ) -> ::core::result::Result<(), ::durable::EntityError> {
                match __op {
                    #(#checks)*
                    _ => ::core::result::Result::Err(::durable::entity::__unknown_op(#stored, __op)),
                }
            }

            #[allow(unused_variables)]
            fn __apply(
                &mut self,
                __op: &str,
                __input: &::durable::history::Payload,
                __ctx: &mut ::durable::EntityContext,
            ) -> ::core::result::Result<::durable::history::Payload, ::durable::EntityError> {
                match __op {
                    #(#arms)*
                    _ => ::core::result::Result::Err(::durable::entity::__unknown_op(#stored, __op)),
                }
            }
        }
    }
}
