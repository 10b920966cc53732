//! How blueprint values are read and written, shared by the interim
//! executor ([`crate::execute`]) and the lowering ([`crate::lower`]), so both
//! give the same value to the same reference.
//!
//! Values are JSON. A reference (`{{deps.X}}`, `{{inputs.Y.field}}`,
//! `{{item}}` …) resolves to the node's value on this iteration, or its value
//! on the previous iteration of a loop; a field path into a text value that
//! holds JSON (code fences allowed) reads the parsed JSON. Templates render
//! strings as they are and other values as compact JSON.

use serde_json::Value;

use crate::ir::reference::RefRoot;
use crate::ir::{Condition, Ref, Template, TemplatePart};

/// Per-call placeholders: the `map` item being run, its index, and the
/// whole list.
#[derive(Clone, Copy, Default)]
pub(crate) struct Scope<'v> {
    pub(crate) item: Option<&'v Value>,
    pub(crate) index: Option<usize>,
    pub(crate) items: Option<&'v Value>,
}

/// The value a node has now: this iteration's, else the previous one's.
pub(crate) fn latest<'v>(values: &'v [Option<Value>], previous: &'v [Option<Value>], id: usize) -> Option<&'v Value> {
    values
        .get(id)
        .and_then(Option::as_ref)
        .or_else(|| previous.get(id).and_then(Option::as_ref))
}

/// A run's values as references see them: the inputs and the nodes' values.
pub(crate) trait Values {
    /// The blueprint input `name`.
    fn input(&self, name: &str) -> Option<&Value>;

    /// The value of the node called `name` (see [`latest`]).
    fn node(&self, name: &str) -> Option<&Value>;

    /// The value `r` refers to; `null` when it has none (yet).
    fn value_of(&self, r: &Ref, scope: Scope<'_>) -> Value {
        let root: Option<Value> = match &r.root {
            RefRoot::Input(n) => self.input(n).cloned(),
            RefRoot::Node(n) => self.node(n).cloned(),
            RefRoot::Item => scope.item.cloned(),
            RefRoot::Index => scope.index.map(Value::from),
            RefRoot::Items => scope.items.cloned(),
        };
        let Some(root) = root else { return Value::Null };
        if r.path.is_empty() {
            return root;
        }
        // A text value holding JSON can still be read field by field.
        let parsed;
        let base = match &root {
            Value::String(s) => match serde_json::from_str::<Value>(strip_fences(s)) {
                Ok(v) => {
                    parsed = v;
                    &parsed
                }
                Err(_) => &root,
            },
            _ => &root,
        };
        r.select(base).cloned().unwrap_or(Value::Null)
    }

    /// `t` rendered to text.
    fn render(&self, t: &Template, scope: Scope<'_>) -> String {
        t.render(|r| text_of(&self.value_of(r, scope)))
    }

    /// A subgraph input: a lone placeholder passes its value through; any
    /// other template is rendered to text.
    fn input_value(&self, t: &Template, scope: Scope<'_>) -> Value {
        match t.parts.as_slice() {
            [TemplatePart::Ref(r, _)] => self.value_of(r, scope),
            _ => Value::String(self.render(t, scope)),
        }
    }
}

pub(crate) fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn parse_list(s: &str) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(strip_fences(s)) {
        Ok(Value::Array(a)) => Some(a),
        _ => None,
    }
}

pub(crate) fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else { return t };
    let rest = rest.split_once('\n').map_or("", |(_, r)| r);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// A list value: an array, a string holding a JSON array, or the
/// non-empty lines of a string.
pub(crate) fn as_list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::String(s) => parse_list(s).unwrap_or_else(|| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| Value::String(l.to_string()))
                .collect()
        }),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

pub(crate) fn matches(cond: &Condition, v: &Value) -> bool {
    match cond {
        Condition::Equals(want) => v == want || (want.as_str().is_some_and(|w| text_of(v).trim() == w.trim())),
        Condition::Contains(s) => text_of(v).contains(s.as_str()),
        Condition::Present => match v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.trim().is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Bool(true) | Value::Number(_) => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_stripped_and_lists_are_lenient() {
        assert_eq!(strip_fences("```json\n[1, 2]\n```"), "[1, 2]");
        assert_eq!(
            as_list(&Value::String("```\n[\"a\"]\n```".into())),
            vec![Value::from("a")]
        );
        assert_eq!(
            as_list(&Value::String("a\n\n b \n".into())),
            vec![Value::from("a"), Value::from("b")]
        );
    }

    #[test]
    fn conditions_match_text_and_json() {
        assert!(matches(
            &Condition::Equals(Value::from("approve")),
            &Value::from(" approve\n")
        ));
        assert!(matches(&Condition::Equals(serde_json::json!(3)), &serde_json::json!(3)));
        assert!(matches(&Condition::Contains("LGTM".into()), &Value::from("ok LGTM")));
        assert!(!matches(&Condition::Present, &Value::from("  ")));
        assert!(matches(&Condition::Present, &serde_json::json!([1])));
    }
}
