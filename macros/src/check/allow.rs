//! The explicit escape hatch: `#[durable::allow(rule, .., reason = "..")]`
//! on a statement, a match arm or the orchestrator fn allows the named
//! rules inside it. The reason is mandatory, so every exception says why it
//! is safe. The macro removes the attribute from what it emits (there is no
//! such attribute for rustc to resolve).

use syn::visit_mut::{self, VisitMut};
use syn::{Arm, Attribute, Expr, FieldValue, Item, ItemFn, LitStr, Local, StmtMacro};

use super::rules::Table;
use crate::ast;
use crate::errors::Errors;

/// Whether `attr` is `#[durable::allow(..)]` (or `#[::durable::allow(..)]`).
pub(super) fn is_allow(attr: &Attribute) -> bool {
    let path = attr.path();
    path.segments.len() == 2
        && path.segments[0].ident == "durable"
        && path.segments[1].ident == "allow"
}

/// The rules the `#[durable::allow(..)]` attributes among `attrs` allow, as
/// indices into `table`. A mistake in one (an unknown rule, no reason) is
/// recorded in `errors`, and that attribute then allows every rule: the
/// user sees the one real error, not also the ones they meant to silence.
pub(super) fn parse(attrs: &[Attribute], table: &Table, errors: &mut Errors) -> Vec<usize> {
    let mut allowed = Vec::new();
    for attr in attrs.iter().filter(|attr| is_allow(attr)) {
        let mut reason: Option<LitStr> = None;
        let mut named = Vec::new();
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("reason") {
                if reason.is_some() {
                    return Err(meta.error("duplicate `reason`: give one"));
                }
                let text: LitStr = meta.value()?.parse()?;
                if text.value().trim().is_empty() {
                    return Err(syn::Error::new_spanned(
                        &text,
                        "the reason must not be empty: say why this is safe on replay",
                    ));
                }
                reason = Some(text);
                return Ok(());
            }
            let id = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match table.find(&id) {
                Some(index) => {
                    named.push(index);
                    Ok(())
                }
                None => Err(meta.error(format!(
                    "unknown rule `{}`: expected one of {}, then `reason = \"..\"`",
                    path_text(&meta.path),
                    table.ids()
                ))),
            }
        });
        let well_formed = parsed.is_ok() && !named.is_empty() && reason.is_some();
        match parsed {
            Err(error) => errors.push(error),
            Ok(()) if named.is_empty() => errors.error_at(
                attr,
                format!(
                    "name the rules to allow: `#[durable::allow(rule, reason = \"..\")]`, where a rule is one of {}",
                    table.ids()
                ),
            ),
            Ok(()) if reason.is_none() => errors.error_at(
                attr,
                "add `reason = \"..\"` to `#[durable::allow(..)]`: say why this is safe on replay",
            ),
            Ok(()) => {}
        }
        if well_formed {
            allowed.extend(named);
        } else {
            allowed.extend(0..table.len());
        }
    }
    allowed
}

/// A rule's path as written, for the message.
fn path_text(path: &syn::Path) -> String {
    let segments: Vec<String> = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect();
    segments.join("::")
}

/// Removes every `#[durable::allow(..)]` from `item` (its own attributes
/// and its body's), for emission; returns them, in source order.
pub(crate) fn strip(item: &mut ItemFn) -> Vec<Attribute> {
    let mut strip = Strip(Vec::new());
    strip.take(&mut item.attrs);
    strip.visit_block_mut(&mut item.block);
    strip.0
}

/// Takes the allow attributes out of every place one can be.
struct Strip(Vec<Attribute>);

impl Strip {
    fn take(&mut self, attrs: &mut Vec<Attribute>) {
        let (allows, others) = std::mem::take(attrs).into_iter().partition(is_allow);
        *attrs = others;
        self.0.extend::<Vec<Attribute>>(allows);
    }
}

impl VisitMut for Strip {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Some(attrs) = ast::expr_attrs_mut(expr) {
            self.take(attrs);
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        self.take(&mut local.attrs);
        visit_mut::visit_local_mut(self, local);
    }

    fn visit_stmt_macro_mut(&mut self, mac: &mut StmtMacro) {
        self.take(&mut mac.attrs);
        visit_mut::visit_stmt_macro_mut(self, mac);
    }

    fn visit_arm_mut(&mut self, arm: &mut Arm) {
        self.take(&mut arm.attrs);
        visit_mut::visit_arm_mut(self, arm);
    }

    fn visit_field_value_mut(&mut self, field: &mut FieldValue) {
        self.take(&mut field.attrs);
        visit_mut::visit_field_value_mut(self, field);
    }

    fn visit_item_mut(&mut self, item: &mut Item) {
        if let Some(attrs) = ast::item_attrs_mut(item) {
            self.take(attrs);
        }
        visit_mut::visit_item_mut(self, item);
    }
}
