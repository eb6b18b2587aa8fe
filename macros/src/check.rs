//! Validation: the misuse checks on the signature and the context, and the
//! determinism rules on an orchestrator's body (`check/determinism.rs`,
//! with the rule table in `check/rules.rs`).
//!
//! Each check records its errors and returns whether the fn can still be
//! expanded: a cosmetic mistake (a missing `async`, a badly bound context)
//! still gets the full expansion, so call sites keep type-checking and the
//! user sees only the real error; a mistake in the shape (generics, a
//! receiver, a missing context) gets the original item back instead.

mod allow;
mod determinism;
mod macro_input;
mod rules;
mod scope;

use syn::visit::{self, Visit};
use syn::{
    GenericParam, ItemFn, Pat, PatType, ReturnType, Type, TypeBareFn, TypeImplTrait, TypeReference,
};

use crate::ast::{self, Kind, Orchestrator};
use crate::errors::Errors;

/// The fn-level misuses, in source order: `const`, `unsafe`, `extern`, a
/// missing `async`, generics and lifetimes, a `self` receiver, a variadic,
/// a `where` clause. Returns whether the fn can still be expanded.
pub(crate) fn signature(item: &ItemFn, kind: Kind, errors: &mut Errors) -> bool {
    let sig = &item.sig;
    let noun = kind.noun();
    let mut expandable = true;
    if let Some(token) = &sig.constness {
        errors.error_at(
            token,
            format!("{noun} cannot be a `const fn`: remove `const`"),
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.error_at(
            token,
            format!("{noun} cannot be an `unsafe fn`: remove `unsafe` and use an `unsafe` block inside the body"),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.error_at(
            abi,
            format!("{noun} cannot have an ABI: remove the `extern`"),
        );
    }
    if sig.asyncness.is_none() {
        errors.error_at(
            sig.fn_token,
            format!("{noun} must be an `async fn`: add `async` before `fn`"),
        );
    }
    for param in &sig.generics.params {
        expandable = false;
        match param {
            GenericParam::Lifetime(param) => errors.error_at(
                param,
                format!(
                    "{noun} cannot have lifetime parameters, as it takes and returns owned values: remove `{}`",
                    param.lifetime
                ),
            ),
            GenericParam::Type(param) => errors.error_at(
                param,
                format!(
                    "{noun} cannot be generic, as its input and output are stored with concrete types: remove `{}` and name the type",
                    param.ident
                ),
            ),
            GenericParam::Const(param) => errors.error_at(
                param,
                format!(
                    "{noun} cannot be generic, as its input and output are stored with concrete types: remove `{}`",
                    param.ident
                ),
            ),
        }
    }
    if let Some(receiver) = sig.receiver() {
        expandable = false;
        errors.error_at(
            receiver,
            format!(
                "{noun} cannot take `self`: make it a free `async fn`, outside any `impl` block"
            ),
        );
    }
    if let Some(variadic) = &sig.variadic {
        expandable = false;
        errors.error_at(variadic, format!("{noun} cannot be variadic: remove `...`"));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        expandable = false;
        errors.error_at(
            where_clause,
            format!("{noun} cannot have a `where` clause: remove it"),
        );
    }
    expandable
}

/// The input parameters: each type must be owned and concrete, since it is
/// stored in history (serde itself is checked by rustc, on the user's
/// type). Returns whether the fn can still be expanded.
pub(crate) fn inputs(inputs: &[&PatType], kind: Kind, errors: &mut Errors) -> bool {
    let noun = kind.noun();
    let mut expandable = true;
    for input in inputs {
        if let Some(reference) = find_reference(&input.ty) {
            expandable = false;
            errors.error_at(
                reference,
                format!("{noun} takes its inputs by value, as they are stored in history: use an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"),
            );
        }
        if let Some(impl_trait) = find_impl_trait(&input.ty) {
            expandable = false;
            errors.error_at(
                impl_trait,
                format!("{noun} cannot take `impl Trait`, as its input is stored with a concrete type: name the type"),
            );
        }
    }
    expandable
}

/// The return type: owned and concrete, like the inputs. Returns whether
/// the fn can still be expanded.
pub(crate) fn output(output: &ReturnType, kind: Kind, errors: &mut Errors) -> bool {
    let ReturnType::Type(_, ty) = output else {
        return true;
    };
    let noun = kind.noun();
    let mut expandable = true;
    if let Some(reference) = find_reference(ty) {
        expandable = false;
        errors.error_at(
            reference,
            format!("{noun} returns an owned value, as its output is stored in history: use an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)"),
        );
    }
    if let Some(impl_trait) = find_impl_trait(ty) {
        expandable = false;
        errors.error_at(
            impl_trait,
            format!("{noun} cannot return `impl Trait`, as its output is stored with a concrete type: name the type"),
        );
    }
    expandable
}

/// The orchestrator's context: present, first, by value, bound to a name,
/// and only one. Returns whether the fn can still be expanded.
pub(crate) fn context(orchestrator: &Orchestrator<'_>, errors: &mut Errors) -> bool {
    let inputs = &orchestrator.function.inputs;
    let mut expandable = true;
    match &orchestrator.context {
        None => {
            expandable = false;
            if let Some(misplaced) = inputs.iter().find(|input| ast::is_context(&input.ty)) {
                errors.error_at(
                    misplaced,
                    "the context must be the first parameter of an orchestrator: move it before the inputs",
                );
            } else if let Some(first) = inputs.first() {
                errors.error_at(
                    first,
                    "an orchestrator takes its context first: add `ctx: Context` before this parameter",
                );
            } else {
                errors.push(syn::Error::new(
                    orchestrator.function.item.sig.paren_token.span.join(),
                    "an orchestrator takes its context first: add the parameter `ctx: Context`",
                ));
            }
        }
        Some(context) => {
            if let Some(reference) = context.by_reference {
                expandable = false;
                errors.error_at(
                    reference,
                    "an orchestrator takes its context by value: write `ctx: Context` (clone it where you need another)",
                );
            }
            if context.ident.is_none() {
                let message = if matches!(&*context.param.pat, Pat::Wild(_)) {
                    "bind the context to a name: write `_ctx` instead of `_`"
                } else {
                    "bind the context to a plain name: write `ctx: Context`"
                };
                errors.error_at(&context.param.pat, message);
            }
            for extra in inputs.iter().filter(|input| ast::is_context(&input.ty)) {
                expandable = false;
                errors.error_at(
                    extra,
                    "an orchestrator takes one context: remove this parameter and use `ctx.clone()` where a second one is needed",
                );
            }
        }
    }
    expandable
}

/// The determinism rules on an orchestrator's body: every call that would
/// break replay is an error on its tokens. The fn can still be expanded
/// (the body compiles as written), so nothing is returned.
pub(crate) fn orchestrator_body(orchestrator: &Orchestrator<'_>, errors: &mut Errors) {
    determinism::check(orchestrator, errors);
}

/// Removes the `#[durable::allow(..)]` attributes from an orchestrator, for
/// emission: rustc has no such attribute. They were read by
/// [`orchestrator_body`].
pub(crate) fn strip_allows(item: &mut ItemFn) {
    allow::strip(item);
}

/// An activity may do anything, so a `#[durable::allow(..)]` in it is a
/// mistake: an error on each, and they are removed from `item`.
pub(crate) fn activity_body(item: &mut ItemFn, errors: &mut Errors) {
    for attr in allow::strip(item) {
        errors.error_at(
            attr,
            "`#[durable::allow(..)]` has no effect in an activity, which may do anything: remove it",
        );
    }
}

/// The first `&T` in `ty`, outside `fn(..)` / `Fn(..)` signatures.
fn find_reference(ty: &Type) -> Option<&TypeReference> {
    #[derive(Default)]
    struct Find<'ast>(Option<&'ast TypeReference>);
    impl<'ast> Visit<'ast> for Find<'ast> {
        fn visit_type_reference(&mut self, reference: &'ast TypeReference) {
            self.0.get_or_insert(reference);
        }
        fn visit_type_bare_fn(&mut self, _: &'ast TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let mut find = Find::default();
    find.visit_type(ty);
    find.0
}

/// The first `impl Trait` in `ty`.
fn find_impl_trait(ty: &Type) -> Option<&TypeImplTrait> {
    #[derive(Default)]
    struct Find<'ast>(Option<&'ast TypeImplTrait>);
    impl<'ast> Visit<'ast> for Find<'ast> {
        fn visit_type_impl_trait(&mut self, impl_trait: &'ast TypeImplTrait) {
            self.0.get_or_insert(impl_trait);
            visit::visit_type_impl_trait(self, impl_trait);
        }
    }
    let mut find = Find::default();
    find.visit_type(ty);
    find.0
}

#[cfg(test)]
mod tests {
    use super::{context, inputs, output, signature};
    use crate::ast::{Activity, Kind, Orchestrator};
    use crate::errors::Errors;
    use syn::{parse_quote, ItemFn};

    /// Runs every check of `kind` on `item`: (expandable, messages).
    fn check(kind: Kind, item: &ItemFn) -> (bool, Vec<String>) {
        let mut errors = Errors::new();
        let mut expandable = signature(item, kind, &mut errors);
        match kind {
            Kind::Activity => {
                let activity = Activity::from_syn(item);
                expandable &= inputs(&activity.function.inputs, kind, &mut errors);
            }
            Kind::Orchestrator => {
                let orchestrator = Orchestrator::from_syn(item);
                expandable &= context(&orchestrator, &mut errors);
                expandable &= inputs(&orchestrator.function.inputs, kind, &mut errors);
            }
        }
        expandable &= output(&item.sig.output, kind, &mut errors);
        (expandable, errors.messages())
    }

    fn activity(item: &ItemFn) -> (bool, Vec<String>) {
        check(Kind::Activity, item)
    }

    fn orchestrator(item: &ItemFn) -> (bool, Vec<String>) {
        check(Kind::Orchestrator, item)
    }

    #[test]
    fn a_good_signature_passes() {
        assert_eq!(
            activity(&parse_quote!(
                pub async fn a(x: u64, y: Vec<String>) -> Result<u8, E> {
                    ..
                }
            )),
            (true, vec![])
        );
        assert_eq!(
            activity(&parse_quote!(
                async fn a() {}
            )),
            (true, vec![])
        );
        assert_eq!(
            orchestrator(&parse_quote!(
                async fn o(ctx: Context, x: u64) -> u64 {
                    x
                }
            )),
            (true, vec![])
        );
        assert_eq!(
            orchestrator(&parse_quote!(
                async fn o(mut _ctx: durable::Context) {}
            )),
            (true, vec![])
        );
        assert_eq!(
            activity(&parse_quote!(
                async fn a(f: Box<dyn Fn(&str)>) {}
            )),
            (true, vec![])
        );
    }

    #[test]
    fn missing_async() {
        assert_eq!(
            activity(&parse_quote!(
                fn a(x: u64) -> u64 {
                    x
                }
            )),
            (
                true,
                vec!["an activity must be an `async fn`: add `async` before `fn`".to_owned()]
            )
        );
        assert_eq!(
            orchestrator(&parse_quote!(
                fn o(ctx: Context) {}
            )),
            (
                true,
                vec!["an orchestrator must be an `async fn`: add `async` before `fn`".to_owned()]
            )
        );
    }

    #[test]
    fn const_unsafe_extern_all_reported_at_once() {
        let (expandable, messages) = activity(&parse_quote!(
            const unsafe extern "C" fn a() {}
        ));
        assert!(expandable);
        assert_eq!(
            messages,
            [
                "an activity cannot be a `const fn`: remove `const`",
                "an activity cannot be an `unsafe fn`: remove `unsafe` and use an `unsafe` block inside the body",
                "an activity cannot have an ABI: remove the `extern`",
                "an activity must be an `async fn`: add `async` before `fn`",
            ]
        );
    }

    #[test]
    fn generics_lifetimes_where() {
        let (expandable, messages) = activity(&parse_quote!(
            async fn a<'a, T: Clone, const N: usize>(x: T)
            where
                T: Copy,
            {
            }
        ));
        assert!(!expandable);
        assert_eq!(
            messages,
            [
                "an activity cannot have lifetime parameters, as it takes and returns owned values: remove `'a`",
                "an activity cannot be generic, as its input and output are stored with concrete types: remove `T` and name the type",
                "an activity cannot be generic, as its input and output are stored with concrete types: remove `N`",
                "an activity cannot have a `where` clause: remove it",
            ]
        );
    }

    #[test]
    fn receiver_and_variadic() {
        let (expandable, messages) = activity(&parse_quote!(
            async fn a(&self, x: u64) {}
        ));
        assert!(!expandable);
        assert_eq!(messages, ["an activity cannot take `self`: make it a free `async fn`, outside any `impl` block"]);
        let (expandable, messages) = activity(&parse_quote!(
            async fn a(x: u64, ...) {}
        ));
        assert!(!expandable);
        assert_eq!(messages, ["an activity cannot be variadic: remove `...`"]);
    }

    #[test]
    fn borrowed_and_impl_trait_types() {
        let (expandable, messages) = activity(&parse_quote!(
            async fn a(x: &str, y: Vec<&[u8]>, z: impl Serialize) -> &'static str {
                ""
            }
        ));
        assert!(!expandable);
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages[0].starts_with("an activity takes its inputs by value"));
        assert!(messages[1].starts_with("an activity takes its inputs by value"));
        assert!(messages[2].starts_with("an activity cannot take `impl Trait`"));
        assert!(messages[3].starts_with("an activity returns an owned value"));
        let (expandable, messages) = orchestrator(&parse_quote!(
            async fn o(ctx: Context) -> impl Serialize {
                1
            }
        ));
        assert!(!expandable);
        assert_eq!(messages, ["an orchestrator cannot return `impl Trait`, as its output is stored with a concrete type: name the type"]);
    }

    #[test]
    fn missing_context() {
        assert_eq!(
            orchestrator(&parse_quote!(
                async fn o() {}
            )),
            (
                false,
                vec![
                    "an orchestrator takes its context first: add the parameter `ctx: Context`"
                        .to_owned()
                ]
            )
        );
        assert_eq!(
            orchestrator(&parse_quote!(async fn o(x: u64) {})),
            (false, vec!["an orchestrator takes its context first: add `ctx: Context` before this parameter".to_owned()])
        );
    }

    #[test]
    fn misplaced_or_extra_context() {
        assert_eq!(
            orchestrator(&parse_quote!(async fn o(x: u64, ctx: Context) {})),
            (false, vec!["the context must be the first parameter of an orchestrator: move it before the inputs".to_owned()])
        );
        assert_eq!(
            orchestrator(&parse_quote!(async fn o(ctx: Context, other: Context) {})),
            (false, vec!["an orchestrator takes one context: remove this parameter and use `ctx.clone()` where a second one is needed".to_owned()])
        );
    }

    #[test]
    fn context_by_reference_or_unnamed() {
        assert_eq!(
            orchestrator(&parse_quote!(async fn o(ctx: &Context) {})),
            (false, vec!["an orchestrator takes its context by value: write `ctx: Context` (clone it where you need another)".to_owned()])
        );
        assert_eq!(
            orchestrator(&parse_quote!(
                async fn o(_: Context) {}
            )),
            (
                true,
                vec!["bind the context to a name: write `_ctx` instead of `_`".to_owned()]
            )
        );
        assert_eq!(
            orchestrator(&parse_quote!(
                async fn o(ref ctx: Context) {}
            )),
            (
                true,
                vec!["bind the context to a plain name: write `ctx: Context`".to_owned()]
            )
        );
    }
}
