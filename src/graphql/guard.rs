//! Checks on a parsed document that async-graphql has no rule for (the alias limit), and the
//! `extensions.code` labels for requests that fail before execution.
//!
//! These run in `transport` rather than as a schema extension: with any extension registered,
//! async-graphql takes a slower path for every resolved field.

use super::errors::{GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Positioned, Request, ServerError, Value, Variables};

/// Gives an error a code unless it has one.
pub fn with_code(mut e: ServerError, code: &str) -> ServerError {
    let has_code = e.extensions.as_ref().is_some_and(|x| x.get("code").is_some());
    if !has_code {
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    e
}

/// Labels the errors of a request that failed validation (it parsed: `prepare` saw to that).
pub fn label_validation_errors(errors: Vec<ServerError>) -> Vec<ServerError> {
    errors
        .into_iter()
        .map(|e| with_code(e, GRAPHQL_VALIDATION_FAILED))
        .collect()
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => count_aliases(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

fn aliases_in(doc: &ExecutableDocument) -> usize {
    let in_ops: usize = doc
        .operations
        .iter()
        .map(|(_, op)| count_aliases(&op.node.selection_set.node))
        .sum();
    let in_fragments: usize = doc
        .fragments
        .values()
        .map(|f| count_aliases(&f.node.selection_set.node))
        .sum();
    in_ops + in_fragments
}

/// Parses the request's document once (execution reuses it) and applies the alias limit.
pub fn prepare(request: &mut Request, max_aliases: usize) -> Result<(), ServerError> {
    let doc = request
        .parsed_query()
        .map_err(|e| with_code(e, GRAPHQL_PARSE_FAILED))?;
    let aliases = aliases_in(doc);
    if aliases > max_aliases {
        return Err(with_code(
            ServerError::new(
                format!("the document uses {aliases} aliases; at most {max_aliases} are allowed"),
                None,
            ),
            GRAPHQL_VALIDATION_FAILED,
        ));
    }
    Ok(())
}

/// The smallest `@budget(maxCredits:)` anywhere in the document (operations, fields,
/// fragments), resolving variables; an error for a negative or non-integer value.
pub fn budget_in(doc: &ExecutableDocument, variables: &Variables) -> Result<Option<u64>, String> {
    let mut found: Option<u64> = None;
    let mut visit = |directives: &[Positioned<Directive>]| -> Result<(), String> {
        for d in directives {
            if d.node.name.node.as_str() != super::enrichment_api::BUDGET_DIRECTIVE {
                continue;
            }
            let Some(raw) = d.node.get_argument("maxCredits") else {
                continue;
            };
            let value = raw
                .node
                .clone()
                .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
                .map_err(|_| "@budget(maxCredits:) uses an undefined variable".to_owned())?;
            let credits = match value {
                Value::Number(n) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| "@budget(maxCredits:) must be a non-negative integer".to_owned())?;
            found = Some(found.map_or(credits, |f| f.min(credits)));
        }
        Ok(())
    };
    type Visit<'v> = dyn FnMut(&[Positioned<Directive>]) -> Result<(), String> + 'v;
    fn walk(set: &SelectionSet, visit: &mut Visit<'_>) -> Result<(), String> {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    visit(&f.node.directives)?;
                    walk(&f.node.selection_set.node, visit)?;
                }
                Selection::InlineFragment(f) => walk(&f.node.selection_set.node, visit)?,
                Selection::FragmentSpread(_) => {}
            }
        }
        Ok(())
    }
    for (_, op) in doc.operations.iter() {
        visit(&op.node.directives)?;
        walk(&op.node.selection_set.node, &mut visit)?;
    }
    for fragment in doc.fragments.values() {
        walk(&fragment.node.selection_set.node, &mut visit)?;
    }
    Ok(found)
}
