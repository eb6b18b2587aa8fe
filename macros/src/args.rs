//! The attribute's arguments: `#[activity(name = "...")]`,
//! `#[orchestrator(name = "...")]`.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::LitStr;

use crate::errors::Errors;

/// What the attribute says; every argument is optional.
#[derive(Default)]
pub(crate) struct Args {
    /// `name = "..."`: the name stored in history instead of the fn's name.
    pub(crate) name: Option<LitStr>,
    /// `version = N`: an orchestrator's version (several may be registered
    /// under one name; an instance runs on the one it started with).
    pub(crate) version: Option<syn::LitInt>,
}

impl Args {
    /// Parses the tokens inside the attribute's parentheses.
    ///
    /// A mistake is recorded in `errors` and the arguments read so far are
    /// kept, so the rest of the macro still runs and reports its own errors.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = Self::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("version") {
                if args.version.is_some() {
                    return Err(meta.error("duplicate argument: expected `version` at most once"));
                }
                let version: syn::LitInt = meta.value()?.parse()?;
                match version.base10_parse::<u32>() {
                    Ok(v) if v >= 1 => {}
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &version,
                            "a version is a whole number from 1: `version = 2`",
                        ))
                    }
                }
                args.version = Some(version);
                return Ok(());
            }
            if !meta.path.is_ident("name") {
                return Err(meta.error("expected `name` or `version`"));
            }
            if args.name.is_some() {
                return Err(meta.error("duplicate argument: expected `name` at most once"));
            }
            let name: LitStr = meta.value()?.parse()?;
            if name.value().is_empty() {
                return Err(syn::Error::new_spanned(
                    &name,
                    "the stored name must not be empty: write `name = \"...\"` with a name, or remove it to use the function's name",
                ));
            }
            if name.value().starts_with('@') {
                return Err(syn::Error::new_spanned(
                    &name,
                    "stored names beginning with `@` are reserved: the runtime keeps entities under them",
                ));
            }
            args.name = Some(name);
            Ok(())
        });
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::Args;
    use crate::errors::Errors;
    use quote::quote;

    fn parse(tokens: proc_macro2::TokenStream) -> (Option<String>, Vec<String>) {
        let mut errors = Errors::new();
        let args = Args::parse(tokens, &mut errors);
        (args.name.map(|name| name.value()), errors.messages())
    }

    #[test]
    fn empty_means_defaults() {
        assert_eq!(parse(quote!()), (None, vec![]));
    }

    #[test]
    fn reads_the_name() {
        assert_eq!(
            parse(quote!(name = "Double")),
            (Some("Double".to_owned()), vec![])
        );
        assert_eq!(
            parse(quote!(name = "Double",)),
            (Some("Double".to_owned()), vec![])
        );
    }

    #[test]
    fn unknown_argument_says_what_is_valid() {
        assert_eq!(
            parse(quote!(retries = 2)),
            (None, vec!["expected `name` or `version`".to_owned()])
        );
    }

    #[test]
    fn a_version_is_a_whole_number_from_one() {
        assert_eq!(
            parse(quote!(name = "A", version = 2)).1,
            Vec::<String>::new()
        );
        assert_eq!(
            parse(quote!(version = 0)).1,
            vec!["a version is a whole number from 1: `version = 2`".to_owned()]
        );
        assert_eq!(
            parse(quote!(name = "@x")).1,
            vec!["stored names beginning with `@` are reserved: the runtime keeps entities under them".to_owned()]
        );
    }

    #[test]
    fn duplicate_name_is_an_error_and_the_first_is_kept() {
        assert_eq!(
            parse(quote!(name = "A", name = "B")),
            (
                Some("A".to_owned()),
                vec!["duplicate argument: expected `name` at most once".to_owned()]
            )
        );
    }

    #[test]
    fn name_must_be_a_non_empty_string() {
        let (name, messages) = parse(quote!(name = Double));
        assert_eq!(name, None);
        assert_eq!(messages, ["expected string literal"]);
        let (name, messages) = parse(quote!(name = ""));
        assert_eq!(name, None);
        assert!(messages[0].starts_with("the stored name must not be empty"));
    }
}
