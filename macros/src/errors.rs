//! An accumulator of compile errors, so that one build reports every
//! independent mistake instead of stopping at the first.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far, folded into one [`syn::Error`] with
/// [`syn::Error::combine`]; each keeps its own span.
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// No errors yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records `error`.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Records `message` on the span of `tokens`: the smallest wrong token.
    pub(crate) fn error_at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Whether nothing was recorded.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// One `compile_error!` per recorded error (nothing if there are none).
    pub(crate) fn to_compile_errors(&self) -> TokenStream {
        self.combined
            .as_ref()
            .map(syn::Error::to_compile_error)
            .unwrap_or_default()
    }

    /// The recorded messages, in order.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        self.combined
            .iter()
            .flat_map(|combined| combined.clone().into_iter())
            .map(|error| error.to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Errors;
    use proc_macro2::Span;

    #[test]
    fn keeps_every_error_in_order() {
        let mut errors = Errors::new();
        assert!(errors.is_empty());
        assert!(errors.to_compile_errors().is_empty());
        errors.push(syn::Error::new(Span::call_site(), "first"));
        errors.error_at(quote::quote!(x), "second");
        assert!(!errors.is_empty());
        assert_eq!(errors.messages(), ["first", "second"]);
        let tokens = errors.to_compile_errors().to_string();
        assert_eq!(tokens.matches("compile_error").count(), 2, "{tokens}");
    }
}
