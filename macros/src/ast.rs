//! Typed views of the annotated function. They borrow the `syn` nodes they
//! come from, so every later stage can put an error on the original tokens.

mod callees;

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    AttrStyle, Attribute, Expr, ExprPath, FnArg, GenericArgument, Ident, Item, ItemFn, Meta, Pat,
    PatType, Path, PathArguments, ReturnType, Token, Type, TypePath, TypeReference,
};

/// Which attribute is being expanded; used to word the errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `#[activity]`.
    Activity,
    /// `#[orchestrator]`.
    Orchestrator,
}

impl Kind {
    /// "an activity" / "an orchestrator", to start an error message.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Activity => "an activity",
            Self::Orchestrator => "an orchestrator",
        }
    }

    /// The attribute as the user writes it.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Self::Activity => "#[activity]",
            Self::Orchestrator => "#[orchestrator]",
        }
    }
}

/// The annotated item as a fn.
///
/// # Errors
/// When it is another kind of item, or syntax `syn` does not know.
pub(crate) fn parse_fn(item: TokenStream, kind: Kind) -> syn::Result<ItemFn> {
    if let Item::Fn(item) = syn::parse2::<Item>(item.clone())? {
        return Ok(item);
    }
    let span = item
        .into_iter()
        .next()
        .map_or_else(Span::call_site, |token| token.span());
    Err(syn::Error::new(
        span,
        format!("`{}` goes on an `async fn`", kind.attribute()),
    ))
}

/// What both kinds of function have: attributes sorted by where they go in
/// the expansion, and the input parameters.
pub(crate) struct Function<'a> {
    /// The whole annotated item.
    pub(crate) item: &'a ItemFn,
    /// `#[doc ..]` (and `#[cfg_attr(.., doc ..)]`): go on the unit struct.
    pub(crate) docs: Vec<&'a Attribute>,
    /// `#[cfg ..]`: go on every generated item.
    pub(crate) cfgs: Vec<&'a Attribute>,
    /// Every other outer attribute: goes on `run`, with the body.
    pub(crate) rest: Vec<&'a Attribute>,
    /// Inner attributes of the body (`#![..]`): stay inside the body.
    pub(crate) inner: Vec<&'a Attribute>,
    /// The parameters that make up the input (after the context, for an
    /// orchestrator).
    pub(crate) inputs: Vec<&'a PatType>,
}

impl<'a> Function<'a> {
    fn new(item: &'a ItemFn, inputs: Vec<&'a PatType>) -> Self {
        let mut function = Self {
            item,
            docs: Vec::new(),
            cfgs: Vec::new(),
            rest: Vec::new(),
            inner: Vec::new(),
            inputs,
        };
        for attr in &item.attrs {
            let list = if matches!(attr.style, AttrStyle::Inner(_)) {
                &mut function.inner
            } else if attr.path().is_ident("doc") || is_doc_cfg_attr(attr) {
                &mut function.docs
            } else if attr.path().is_ident("cfg") {
                &mut function.cfgs
            } else {
                &mut function.rest
            };
            list.push(attr);
        }
        function
    }

    /// The function's name, which the unit struct takes.
    pub(crate) fn ident(&self) -> &'a Ident {
        &self.item.sig.ident
    }

    /// The typed parameters, receiver excluded.
    fn typed_params(item: &'a ItemFn) -> impl Iterator<Item = &'a PatType> {
        item.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(param) => Some(param),
            FnArg::Receiver(_) => None,
        })
    }
}

/// `#[cfg_attr(pred, doc ..)]`, the usual way to add docs under a cfg
/// (`doc(cfg(..))` on docs.rs): it belongs with the docs, on the struct.
fn is_doc_cfg_attr(attr: &Attribute) -> bool {
    if !attr.path().is_ident("cfg_attr") {
        return false;
    }
    let Ok(nested) = attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) else {
        return false;
    };
    nested.len() > 1
        && nested
            .iter()
            .skip(1)
            .all(|meta| meta.path().is_ident("doc"))
}

/// What an activity's return type means.
#[derive(Debug)]
pub(crate) enum ActivityOutput<'a> {
    /// No return type: the output is `()` and the activity cannot fail.
    Unit,
    /// `T` that is not written `Result<_, _>`: the output, and the activity
    /// cannot fail.
    Value(&'a Type),
    /// `Result<T, E>` (any path ending in `Result` with two type arguments):
    /// `T` is the output, `E` the error of a failed attempt.
    Result {
        /// The whole written return type, for spans.
        ty: &'a Type,
        /// `T`.
        ok: &'a Type,
        /// `E`.
        err: &'a Type,
    },
}

/// `#[activity] async fn name(inputs..) -> output`.
pub(crate) struct Activity<'a> {
    /// The parts common to both kinds.
    pub(crate) function: Function<'a>,
    /// What the return type means.
    pub(crate) output: ActivityOutput<'a>,
}

impl<'a> Activity<'a> {
    /// Views `item`; every typed parameter is an input.
    pub(crate) fn from_syn(item: &'a ItemFn) -> Self {
        let inputs = Function::typed_params(item).collect();
        let output = match &item.sig.output {
            ReturnType::Default => ActivityOutput::Unit,
            ReturnType::Type(_, ty) => match result_args(ty) {
                Some((ok, err)) => ActivityOutput::Result { ty, ok, err },
                None => ActivityOutput::Value(ty),
            },
        };
        Self {
            function: Function::new(item, inputs),
            output,
        }
    }
}

/// The orchestrator's first parameter, `ctx: Context`.
pub(crate) struct ContextParam<'a> {
    /// The whole parameter.
    pub(crate) param: &'a PatType,
    /// The name it is bound to, when the pattern is a plain name
    /// (`ctx`, `mut ctx`, `_ctx`).
    pub(crate) ident: Option<&'a Ident>,
    /// `&Context` / `&mut Context`: a mistake the checker reports.
    pub(crate) by_reference: Option<&'a TypeReference>,
}

/// `#[orchestrator] async fn name(ctx: Context, inputs..) -> output`.
pub(crate) struct Orchestrator<'a> {
    /// The parts common to both kinds; `inputs` are the parameters after
    /// the context (all of them when the first is not a context).
    pub(crate) function: Function<'a>,
    /// The first parameter, when its type is a context.
    pub(crate) context: Option<ContextParam<'a>>,
    /// The return type as written; `None` for `()`.
    pub(crate) output: Option<&'a Type>,
    /// The activity values the body passes to `ctx.call` and
    /// `ctx.call_with_retry`, deduplicated, in order of appearance.
    pub(crate) callees: Vec<Path>,
}

impl<'a> Orchestrator<'a> {
    /// Views `item`; the first parameter is the context when its type is one.
    pub(crate) fn from_syn(item: &'a ItemFn) -> Self {
        let mut params = Function::typed_params(item).peekable();
        let context = params.peek().and_then(|param| context_param(param));
        if context.is_some() {
            params.next();
        }
        let inputs = params.collect();
        let callees = match context.as_ref().and_then(|context| context.ident) {
            Some(ctx) => callees::collect(item, ctx),
            None => Vec::new(),
        };
        let output = match &item.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        Self {
            function: Function::new(item, inputs),
            context,
            output,
            callees,
        }
    }
}

/// `param` as the context parameter, if its type is a context (by value or
/// by reference).
fn context_param(param: &PatType) -> Option<ContextParam<'_>> {
    let by_reference = match peel(&param.ty) {
        Type::Reference(reference) => Some(reference),
        _ => None,
    };
    let ty = by_reference.map_or(&*param.ty, |reference| &*reference.elem);
    if !is_context(ty) {
        return None;
    }
    let ident = match &*param.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(&pat.ident),
        _ => None,
    };
    Some(ContextParam {
        param,
        ident,
        by_reference,
    })
}

/// Whether `ty` is written as the context: `Context` or a path ending in
/// `Context`. rustc then checks it is `::durable::Context` (the generated
/// `invoke` passes one, spanned on this type).
pub(crate) fn is_context(ty: &Type) -> bool {
    match peel(ty) {
        Type::Path(TypePath { qself: None, path }) => path.segments.last().is_some_and(|last| {
            last.ident == "Context" && matches!(last.arguments, PathArguments::None)
        }),
        _ => false,
    }
}

/// `Result<T, E>`'s `T` and `E`: a path whose last segment is `Result` with
/// exactly two type arguments. `io::Result<T>` and other one-argument
/// aliases are not recognised; the activity's docs say so.
pub(crate) fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(TypePath { qself: None, path }) = peel(ty) else {
        return None;
    };
    let last = path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut args = generics.args.iter();
    match (args.next(), args.next(), args.next()) {
        (Some(GenericArgument::Type(ok)), Some(GenericArgument::Type(err)), None) => {
            Some((ok, err))
        }
        _ => None,
    }
}

/// Whether `expr` is the context bound to `ctx`: `ctx`, `(ctx)`, `&ctx`,
/// `ctx.clone()`.
pub(crate) fn is_context_expr(expr: &Expr, ctx: &str) -> bool {
    match expr {
        Expr::Path(ExprPath {
            qself: None, path, ..
        }) => path.get_ident().is_some_and(|ident| ident.unraw() == ctx),
        Expr::Paren(expr) => is_context_expr(&expr.expr, ctx),
        Expr::Group(expr) => is_context_expr(&expr.expr, ctx),
        Expr::Reference(expr) => is_context_expr(&expr.expr, ctx),
        Expr::MethodCall(call) if call.method == "clone" && call.args.is_empty() => {
            is_context_expr(&call.receiver, ctx)
        }
        _ => false,
    }
}

/// Calls `$then!(args; Variant..)` with every `Expr` variant that has
/// attributes (or every such `Item` variant): the one list of them.
macro_rules! variants_with_attrs {
    (Expr, $then:ident!($($args:tt)*)) => {
        $then!($($args)*;
            Array Assign Async Await Binary Block Break Call Cast Closure Const
            Continue Field ForLoop Group If Index Infer Let Lit Loop Macro Match
            MethodCall Paren Path Range RawAddr Reference Repeat Return Struct Try
            TryBlock Tuple Unary Unsafe While Yield)
    };
    (Item, $then:ident!($($args:tt)*)) => {
        $then!($($args)*;
            Const Enum ExternCrate Fn ForeignMod Impl Macro Mod Static Struct Trait
            TraitAlias Type Union Use)
    };
}

/// `Some(&node.attrs)` (or `&mut`) for the variants listed, else `None`.
macro_rules! attrs_of {
    ($node:expr, $kind:ident, &; $($variant:ident)*) => {
        match $node {
            $($kind::$variant(node) => Some(&node.attrs),)*
            _ => None,
        }
    };
    ($node:expr, $kind:ident, &mut; $($variant:ident)*) => {
        match $node {
            $($kind::$variant(node) => Some(&mut node.attrs),)*
            _ => None,
        }
    };
}

/// An expression's outer attributes (for a statement's expression, the
/// statement's).
pub(crate) fn expr_attrs(expr: &Expr) -> &[Attribute] {
    variants_with_attrs!(Expr, attrs_of!(expr, Expr, &)).map_or(&[], Vec::as_slice)
}

/// An expression's outer attributes, to edit; `None` for `Verbatim`.
pub(crate) fn expr_attrs_mut(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    variants_with_attrs!(Expr, attrs_of!(expr, Expr, &mut))
}

/// An item's attributes.
pub(crate) fn item_attrs(item: &Item) -> &[Attribute] {
    variants_with_attrs!(Item, attrs_of!(item, Item, &)).map_or(&[], Vec::as_slice)
}

/// An item's attributes, to edit; `None` for `Verbatim`.
pub(crate) fn item_attrs_mut(item: &mut Item) -> Option<&mut Vec<Attribute>> {
    variants_with_attrs!(Item, attrs_of!(item, Item, &mut))
}

/// `ty` without invisible groups (from `macro_rules!`) and parentheses.
fn peel(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{result_args, Activity, ActivityOutput, Orchestrator};
    use quote::ToTokens;
    use syn::{parse_quote, ItemFn, Type};

    fn text(tokens: impl ToTokens) -> String {
        tokens.to_token_stream().to_string()
    }

    #[test]
    fn result_is_detected_by_two_type_arguments() {
        let yes: [Type; 4] = [
            parse_quote!(Result<u64, String>),
            parse_quote!(std::result::Result<(), MyError>),
            parse_quote!(::core::result::Result<Vec<u8>, E>),
            parse_quote!((Result<u8, u8>)),
        ];
        for ty in &yes {
            assert!(result_args(ty).is_some(), "{}", text(ty));
        }
        let (ok, err) = result_args(&yes[0]).unwrap();
        assert_eq!(
            (text(ok), text(err)),
            ("u64".to_owned(), "String".to_owned())
        );

        let no: [Type; 5] = [
            parse_quote!(io::Result<u64>),
            parse_quote!(u64),
            parse_quote!(Option<Result<u8, u8>>),
            parse_quote!(Result<'a, u8>),
            parse_quote!(<T as Tr>::Result<u8, u8>),
        ];
        for ty in &no {
            assert!(result_args(ty).is_none(), "{}", text(ty));
        }
    }

    #[test]
    fn activity_output_shapes() {
        let unit: ItemFn = parse_quote!(
            async fn a() {}
        );
        assert!(matches!(
            Activity::from_syn(&unit).output,
            ActivityOutput::Unit
        ));
        let value: ItemFn = parse_quote!(
            async fn a() -> u64 {
                1
            }
        );
        assert!(matches!(
            Activity::from_syn(&value).output,
            ActivityOutput::Value(_)
        ));
        let result: ItemFn = parse_quote!(
            async fn a() -> Result<u64, String> {
                Ok(1)
            }
        );
        match Activity::from_syn(&result).output {
            ActivityOutput::Result { ok, err, .. } => {
                assert_eq!(
                    (text(ok), text(err)),
                    ("u64".to_owned(), "String".to_owned())
                );
            }
            other => panic!("not a Result: {other:?}"),
        }
    }

    #[test]
    fn attributes_are_sorted_by_destination() {
        let item: ItemFn = parse_quote! {
            /// Docs.
            #[cfg(feature = "x")]
            #[cfg_attr(docsrs, doc(cfg(feature = "x")))]
            #[cfg_attr(test, allow(unused))]
            #[inline]
            async fn a() {
                #![allow(clippy::all)]
            }
        };
        let activity = Activity::from_syn(&item);
        let f = &activity.function;
        let texts = |attrs: &[&syn::Attribute]| attrs.iter().map(text).collect::<Vec<_>>();
        assert_eq!(texts(&f.docs).len(), 2);
        assert_eq!(texts(&f.cfgs), ["# [cfg (feature = \"x\")]"]);
        assert_eq!(
            texts(&f.rest),
            ["# [cfg_attr (test , allow (unused))]", "# [inline]"]
        );
        assert_eq!(texts(&f.inner), ["# ! [allow (clippy :: all)]"]);
    }

    #[test]
    fn orchestrator_context_is_the_first_parameter() {
        let item: ItemFn = parse_quote!(
            async fn o(mut ctx: durable::Context, x: u64, y: u8) {}
        );
        let orchestrator = Orchestrator::from_syn(&item);
        let context = orchestrator.context.unwrap();
        assert_eq!(text(context.ident), "ctx");
        assert!(context.by_reference.is_none());
        assert_eq!(orchestrator.function.inputs.len(), 2);
        assert!(orchestrator.output.is_none());

        let item: ItemFn = parse_quote!(
            async fn o(x: u64, ctx: Context) -> u8 {
                1
            }
        );
        let orchestrator = Orchestrator::from_syn(&item);
        assert!(orchestrator.context.is_none());
        assert_eq!(orchestrator.function.inputs.len(), 2);
        assert_eq!(text(orchestrator.output), "u8");

        let item: ItemFn = parse_quote!(
            async fn o((a, b): Context) {}
        );
        let orchestrator = Orchestrator::from_syn(&item);
        assert!(orchestrator
            .context
            .is_some_and(|context| context.ident.is_none()));

        let item: ItemFn = parse_quote!(
            async fn o(ctx: &Context) {}
        );
        let orchestrator = Orchestrator::from_syn(&item);
        assert!(orchestrator
            .context
            .is_some_and(|context| context.by_reference.is_some()));
    }
}
