//! Checks on a parsed document that async-graphql has no rule for (the alias limit), and the
//! `extensions.code` labels for requests that fail before execution.
//!
//! These run in `transport` rather than as a schema extension: with any extension registered,
//! async-graphql takes a slower path for every resolved field.

use super::errors::{GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Request, ServerError};

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
