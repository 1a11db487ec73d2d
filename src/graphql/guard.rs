//! Checks on a parsed document that async-graphql has no rule for — the alias limit, repeated
//! response keys, directives per field, who may introspect and how deep — and the
//! `extensions.code` labels for requests that fail before execution.
//!
//! These run in `transport` (for HTTP, the WebSocket and `enrichmentPlan` alike) rather than as
//! a schema extension: with any extension registered, async-graphql takes a slower path for
//! every resolved field. They run before async-graphql's own validation, whose cost grows with
//! repeated fields and directives, so they refuse a hostile document before that work starts.
//! Every walk here visits each written selection set once and follows fragment spreads with a
//! cycle check and a nesting bound, so no document makes them loop or recurse without end.

use super::errors::{GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, INTROSPECTION_DISABLED, coded};
use super::{IntrospectionPolicy, Limits};
use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned, Request, ServerError, Value, Variables};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Introspection lists that lead back to types (`__Type.fields`, …): each nesting of one inside
/// another multiplies the answer by the schema's size.
const INTROSPECTION_LISTS: [&str; 4] = ["fields", "inputFields", "interfaces", "possibleTypes"];

/// Nested introspection lists allowed: the standard introspection query needs one
/// (`types { fields … }`); like graphql-js's `MaxIntrospectionDepthRule`, a third is refused.
pub const MAX_INTROSPECTION_LISTS: usize = 2;

/// How far the walks below follow nested selections and fragment spreads. async-graphql refuses
/// documents nested more than 32 deep (`recursive_depth`) right after these checks; stopping
/// here keeps the walks off the edge of the stack.
const MAX_NESTING: usize = 64;

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

/// Parses the request's document once (execution reuses it) and checks it: `check_document`.
pub fn prepare(request: &mut Request, limits: &Limits, authenticated: bool) -> Result<(), ServerError> {
    let doc = request
        .parsed_query()
        .map_err(|e| with_code(e, GRAPHQL_PARSE_FAILED))?;
    check_document(doc, limits, authenticated)
}

/// Who may introspect, then the limits: aliases, repeated response keys, directives per
/// place, and (for introspection) nested type lists.
pub fn check_document(
    doc: &ExecutableDocument,
    limits: &Limits,
    authenticated: bool,
) -> Result<(), ServerError> {
    let refuse = |message: String, pos: Option<Pos>| {
        Err(with_code(
            ServerError::new(message, pos),
            GRAPHQL_VALIDATION_FAILED,
        ))
    };
    let sets = selection_sets(doc);
    let introspection = introspection_fields(&sets);
    if let Some(first) = introspection.first() {
        let refusal = match (limits.introspection, authenticated) {
            (IntrospectionPolicy::Always, _) | (IntrospectionPolicy::Authenticated, true) => None,
            (IntrospectionPolicy::Authenticated, false) => {
                Some("introspection needs authentication: send `Authorization: Bearer <token>`")
            }
            (IntrospectionPolicy::Never, _) => Some("introspection is disabled on this server"),
        };
        if let Some(message) = refusal {
            return Err(coded(INTROSPECTION_DISABLED, message).into_server_error(first.pos));
        }
    }
    let aliases = aliases_in(doc);
    if aliases > limits.aliases {
        let max = limits.aliases;
        return refuse(
            format!("the document uses {aliases} aliases; at most {max} are allowed"),
            None,
        );
    }
    if let Some((place, n, pos)) = too_many_directives(doc, &sets, limits.directives) {
        let max = limits.directives;
        return refuse(
            format!("{place} has {n} directives; at most {max} are allowed on one field"),
            Some(pos),
        );
    }
    let mut counter = KeyCounter {
        doc,
        memo: HashMap::new(),
    };
    for set in &sets {
        let mut counts = HashMap::new();
        if let Some(key) = counter.add(set, &mut counts, limits.field_repeats, 0) {
            let max = limits.field_repeats;
            return refuse(
                format!(
                    "`{key}` is selected more than {max} times in one selection set; select each field once"
                ),
                None,
            );
        }
    }
    let mut lists = ListDepth {
        doc,
        memo: HashMap::new(),
        visiting: HashSet::new(),
    };
    for field in &introspection {
        if lists.too_deep(field.set, 0, 0) {
            return refuse(
                format!(
                    "introspection nested too deep: at most {MAX_INTROSPECTION_LISTS} nested `fields`, \
                     `inputFields`, `interfaces` or `possibleTypes`"
                ),
                Some(field.pos),
            );
        }
    }
    Ok(())
}

/// Every selection set written in the document, nested ones included, each once: operations'
/// and fragment definitions', without following spreads.
fn selection_sets(doc: &ExecutableDocument) -> Vec<&SelectionSet> {
    let mut stack: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .collect();
    let mut out = Vec::new();
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => stack.push(&f.node.selection_set.node),
                Selection::InlineFragment(f) => stack.push(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
        out.push(set);
    }
    out
}

/// A `__schema` or `__type` field.
struct IntrospectionField<'d> {
    set: &'d SelectionSet,
    pos: Pos,
}

fn introspection_fields<'d>(sets: &[&'d SelectionSet]) -> Vec<IntrospectionField<'d>> {
    sets.iter()
        .flat_map(|set| set.items.iter())
        .filter_map(|item| match &item.node {
            Selection::Field(f) if matches!(f.node.name.node.as_str(), "__schema" | "__type") => {
                Some(IntrospectionField {
                    set: &f.node.selection_set.node,
                    pos: f.pos,
                })
            }
            _ => None,
        })
        .collect()
}

/// The first place with more than `max` directives: what to call it, how many, where.
fn too_many_directives(
    doc: &ExecutableDocument,
    sets: &[&SelectionSet],
    max: usize,
) -> Option<(String, usize, Pos)> {
    for (_, op) in doc.operations.iter() {
        if op.node.directives.len() > max {
            return Some(("the operation".into(), op.node.directives.len(), op.pos));
        }
    }
    for (name, fragment) in &doc.fragments {
        if fragment.node.directives.len() > max {
            return Some((
                format!("fragment `{name}`"),
                fragment.node.directives.len(),
                fragment.pos,
            ));
        }
    }
    for item in sets.iter().flat_map(|set| set.items.iter()) {
        let (place, count) = match &item.node {
            Selection::Field(f) => (format!("`{}`", f.node.name.node), f.node.directives.len()),
            Selection::FragmentSpread(s) => (
                format!("`...{}`", s.node.fragment_name.node),
                s.node.directives.len(),
            ),
            Selection::InlineFragment(f) => ("an inline fragment".into(), f.node.directives.len()),
        };
        if count > max {
            return Some((place, count, item.pos));
        }
    }
    None
}

/// Counts response keys per selection set with inline fragments and fragment spreads
/// flattened in; each fragment's own counts are worked out once.
struct KeyCounter<'d> {
    doc: &'d ExecutableDocument,
    /// `None` while a fragment is being counted (a spread of it then is a cycle, counted as
    /// nothing: validation refuses cycles).
    memo: HashMap<&'d str, Option<Rc<HashMap<&'d str, usize>>>>,
}

impl<'d> KeyCounter<'d> {
    /// Adds the keys `set` selects to `counts`; the first key counted more than `max` times.
    fn add(
        &mut self,
        set: &'d SelectionSet,
        counts: &mut HashMap<&'d str, usize>,
        max: usize,
        nesting: usize,
    ) -> Option<&'d str> {
        if nesting > MAX_NESTING {
            return None;
        }
        let bump = |counts: &mut HashMap<&'d str, usize>, key: &'d str, by: usize| {
            let n = counts.entry(key).or_default();
            *n = n.saturating_add(by);
            *n > max
        };
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let key = f.node.response_key().node.as_str();
                    if bump(counts, key, 1) {
                        return Some(key);
                    }
                }
                Selection::InlineFragment(f) => {
                    if let Some(key) = self.add(&f.node.selection_set.node, counts, max, nesting + 1) {
                        return Some(key);
                    }
                }
                Selection::FragmentSpread(s) => {
                    let Some(fragment) = self.fragment(s.node.fragment_name.node.as_str(), nesting + 1)
                    else {
                        continue;
                    };
                    for (key, by) in fragment.iter() {
                        if bump(counts, key, *by) {
                            return Some(key);
                        }
                    }
                }
            }
        }
        None
    }

    /// The keys a fragment selects, flattened.
    fn fragment(&mut self, name: &str, nesting: usize) -> Option<Rc<HashMap<&'d str, usize>>> {
        let (name, definition) = self.doc.fragments.get_key_value(name)?;
        let name = name.as_str();
        match self.memo.get(name) {
            Some(known) => return known.clone(),
            None => {
                self.memo.insert(name, None);
            }
        }
        let mut counts = HashMap::new();
        self.add(
            &definition.node.selection_set.node,
            &mut counts,
            usize::MAX,
            nesting,
        );
        let counts = Rc::new(counts);
        self.memo.insert(name, Some(counts.clone()));
        Some(counts)
    }
}

/// Finds introspection lists nested more than `MAX_INTROSPECTION_LISTS` deep.
struct ListDepth<'d> {
    doc: &'d ExecutableDocument,
    /// (fragment, lists already around its spread) → whether it goes too deep.
    memo: HashMap<(&'d str, usize), bool>,
    /// Fragments on the current path (a spread of one of them is a cycle).
    visiting: HashSet<&'d str>,
}

impl<'d> ListDepth<'d> {
    fn too_deep(&mut self, set: &'d SelectionSet, lists: usize, nesting: usize) -> bool {
        if nesting > MAX_NESTING {
            return false;
        }
        for item in &set.items {
            let deep = match &item.node {
                Selection::Field(f) => {
                    let inner = lists + usize::from(INTROSPECTION_LISTS.contains(&f.node.name.node.as_str()));
                    inner > MAX_INTROSPECTION_LISTS
                        || self.too_deep(&f.node.selection_set.node, inner, nesting + 1)
                }
                Selection::InlineFragment(f) => self.too_deep(&f.node.selection_set.node, lists, nesting + 1),
                Selection::FragmentSpread(s) => {
                    let Some((name, definition)) =
                        self.doc.fragments.get_key_value(&s.node.fragment_name.node)
                    else {
                        continue;
                    };
                    let name = name.as_str();
                    if let Some(known) = self.memo.get(&(name, lists)) {
                        *known
                    } else if !self.visiting.insert(name) {
                        false
                    } else {
                        let deep = self.too_deep(&definition.node.selection_set.node, lists, nesting + 1);
                        self.visiting.remove(name);
                        self.memo.insert((name, lists), deep);
                        deep
                    }
                }
            };
            if deep {
                return true;
            }
        }
        false
    }
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
