//! What a request costs against its rate limit: 1, plus 1 for every 100 fields it may return.
//!
//! The estimate walks the operation that will run (fragments followed, at most `MAX_DEPTH`
//! levels, so a cyclic fragment that validation will refuse anyway cannot loop): each selected
//! field counts once for every item of the lists around it, and a list's size is its `first`
//! or `last` argument (a variable is read from the request), else `DEFAULT_PAGE` for a field
//! with arguments of a connection's shape. A page of 50 leads with ten fields costs 6; a
//! `{ lead(id:) { … } }` costs 1. Known before execution, so a refused request does no work.

use async_graphql::Variables;
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Name, Value};

/// Fields that make one cost unit.
const FIELDS_PER_UNIT: u64 = 100;

/// The page size assumed for `first`/`last` that is not given.
const DEFAULT_PAGE: u64 = 50;

/// Nesting followed at most (the schema's own depth limit is lower).
const MAX_DEPTH: usize = 40;

/// The cost of the operation `operation_name` (or the only one) of `doc`, at least 1, at most
/// `u32::MAX`.
pub fn estimate(doc: &ExecutableDocument, operation_name: Option<&str>, variables: &Variables) -> u32 {
    let Some(operation) = super::selected_operation(doc, operation_name) else {
        return 1;
    };
    let mut fields = 0u64;
    walk(
        doc,
        &operation.node.selection_set.node,
        variables,
        1,
        0,
        &mut fields,
    );
    // a subscription is charged for starting, not per event
    if operation.node.ty == OperationType::Subscription {
        return 1;
    }
    let units = 1 + fields / FIELDS_PER_UNIT;
    u32::try_from(units).unwrap_or(u32::MAX)
}

fn walk(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    variables: &Variables,
    multiplier: u64,
    depth: usize,
    fields: &mut u64,
) {
    if depth >= MAX_DEPTH {
        return;
    }
    for item in &set.items {
        // the selection set below this item, and how many times each of its fields counts
        let (below, times) = match &item.node {
            Selection::Field(field) => {
                *fields = fields.saturating_add(multiplier);
                let size = page_size(&field.node, variables);
                (&field.node.selection_set.node, multiplier.saturating_mul(size))
            }
            Selection::InlineFragment(fragment) => (&fragment.node.selection_set.node, multiplier),
            Selection::FragmentSpread(spread) => match doc.fragments.get(&spread.node.fragment_name.node) {
                Some(fragment) => (&fragment.node.selection_set.node, multiplier),
                None => continue,
            },
        };
        walk(doc, below, variables, times, depth + 1, fields);
    }
}

/// The items a field returns per parent: its `first`/`last`, `DEFAULT_PAGE` for a connection
/// without them, else 1.
fn page_size(field: &async_graphql::parser::types::Field, variables: &Variables) -> u64 {
    let mut connection_like = false;
    for (name, value) in &field.arguments {
        let name = name.node.as_str();
        if matches!(name, "first" | "last") {
            let value = value
                .node
                .clone()
                .into_const_with(|var: Name| variables.get(&var).cloned().ok_or(()));
            if let Ok(Value::Number(n)) = value
                && let Some(n) = n.as_u64()
            {
                return n.max(1);
            }
            connection_like = true;
        }
        if matches!(name, "after" | "before") {
            connection_like = true;
        }
    }
    let edges = field.selection_set.node.items.iter().any(
        |s| matches!(&s.node, Selection::Field(f) if matches!(f.node.name.node.as_str(), "edges" | "nodes")),
    );
    if connection_like || edges { DEFAULT_PAGE } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(query: &str, variables: serde_json::Value) -> u32 {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        let variables = Variables::from_json(variables);
        estimate(&doc, None, &variables)
    }

    #[test]
    fn a_single_lead_costs_one_and_a_page_costs_by_its_size() {
        assert_eq!(
            cost("{ lead(id: \"x\") { id email company } }", serde_json::json!({})),
            1
        );
        let page = "query($n: Int) { leads(first: $n) { edges { cursor node { id email firstName lastName company title } } } }";
        // `leads` once; per lead an edge, its cursor, its node and six fields: 1 + 9n
        assert_eq!(cost(page, serde_json::json!({"n": 50})), 1 + (1 + 9 * 50) / 100);
        assert_eq!(
            cost(page, serde_json::json!({"n": 1000})),
            1 + (1 + 9 * 1000) / 100
        );
        assert_eq!(
            cost(page, serde_json::json!({})),
            1 + (1 + 9 * 50) / 100,
            "no size: the default page"
        );
    }

    #[test]
    fn fragments_count_where_they_are_spread_and_cycles_end() {
        let spread =
            "query { leads(first: 100) { edges { node { ...F } } } } fragment F on Lead { id email phone }";
        assert_eq!(cost(spread, serde_json::json!({})), 1 + (1 + 100 * 5) / 100);
        let cyclic = "query { leads(first: 10) { edges { node { ...A } } } } fragment A on Lead { id ...A }";
        assert!(cost(cyclic, serde_json::json!({})) < 100, "the walk stops");
    }

    #[test]
    fn a_subscription_costs_one_to_start() {
        assert_eq!(
            cost(
                "subscription { leadChanged { lead { id } } }",
                serde_json::json!({})
            ),
            1
        );
    }
}
