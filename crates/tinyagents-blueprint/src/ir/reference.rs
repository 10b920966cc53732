//! References: how a node names a value (`inputs.topic`, `planner`,
//! `reviewer.verdict`, and in bodies `item`, `index`, `items`).

use std::fmt;

/// What a reference starts from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RefRoot {
    /// A blueprint input: `inputs.NAME`.
    Input(String),
    /// A node's value: `NODE` (in templates `deps.NODE`).
    Node(String),
    /// The current item of a map body.
    Item,
    /// The current index of a map body.
    Index,
    /// The list a reducer folds.
    Items,
}

/// A parsed reference: a root and a path of object fields (or array
/// indices) into its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ref {
    /// Where it starts.
    pub root: RefRoot,
    /// Fields below the root.
    pub path: Vec<String>,
}

/// Why a reference did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RefError {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: &'static str,
}

/// True for a valid identifier: a letter or `_`, then letters, digits, `_` or `-`.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_segment(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Ref {
    /// A reference to a node's whole value.
    pub fn node(name: impl Into<String>) -> Self {
        Self {
            root: RefRoot::Node(name.into()),
            path: Vec::new(),
        }
    }

    /// Parses a source reference as written in `over`, `on` and `from`
    /// (`inputs.NAME…` or `NODE…`).
    pub fn parse_source(text: &str) -> Result<Self, RefError> {
        Self::parse(text, false)
    }

    /// Parses a template placeholder (`inputs.NAME…`, `deps.NODE…`, `item…`,
    /// `index`, `items`).
    pub fn parse_placeholder(text: &str) -> Result<Self, RefError> {
        Self::parse(text, true)
    }

    fn parse(text: &str, placeholder: bool) -> Result<Self, RefError> {
        let text = text.trim();
        let mut segs = text.split('.');
        let first = segs.next().unwrap_or_default();
        let bad = |message: String| RefError {
            message,
            hint: if placeholder {
                "write {{inputs.NAME}}, {{deps.NODE}}, {{deps.NODE.field}}, {{item}}, {{index}} or {{items}}"
            } else {
                "write inputs.NAME, NODE or NODE.field"
            },
        };
        let root = match first {
            "inputs" => RefRoot::Input(
                segs.next()
                    .filter(|s| is_ident(s))
                    .ok_or_else(|| bad(format!("`{text}` names no input")))?
                    .to_string(),
            ),
            "deps" if placeholder => RefRoot::Node(
                segs.next()
                    .filter(|s| is_ident(s))
                    .ok_or_else(|| bad(format!("`{text}` names no node")))?
                    .to_string(),
            ),
            "item" if placeholder => RefRoot::Item,
            "index" if placeholder => RefRoot::Index,
            "items" if placeholder => RefRoot::Items,
            "deps" | "item" | "index" | "items" if !placeholder => {
                return Err(bad(format!(
                    "`{text}`: `{first}` is a template placeholder, not a source (write the node's name alone)"
                )));
            }
            name if !placeholder && is_ident(name) => RefRoot::Node(name.to_string()),
            _ => return Err(bad(format!("`{text}` is not a reference"))),
        };
        let path: Vec<String> = segs.map(str::to_string).collect();
        if let Some(p) = path.iter().find(|p| !is_segment(p)) {
            return Err(bad(format!("`{text}` has an invalid field `{p}`")));
        }
        if matches!(root, RefRoot::Index) && !path.is_empty() {
            return Err(bad(format!("`{text}`: an index has no fields")));
        }
        Ok(Self { root, path })
    }

    /// The node this reference reads, if it reads one.
    pub fn node_name(&self) -> Option<&str> {
        match &self.root {
            RefRoot::Node(n) => Some(n),
            _ => None,
        }
    }

    /// Follows `path` into `value` (object fields, array indices).
    pub fn select<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.path.iter().try_fold(value, |v, seg| match v {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.root {
            RefRoot::Input(n) => write!(f, "inputs.{n}")?,
            RefRoot::Node(n) => f.write_str(n)?,
            RefRoot::Item => f.write_str("item")?,
            RefRoot::Index => f.write_str("index")?,
            RefRoot::Items => f.write_str("items")?,
        }
        for p in &self.path {
            write!(f, ".{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_placeholders_parse() {
        assert_eq!(Ref::parse_source("planner").unwrap(), Ref::node("planner"));
        let r = Ref::parse_source("reviewer.verdict").unwrap();
        assert_eq!(
            (r.node_name(), r.path.as_slice()),
            (Some("reviewer"), &["verdict".to_string()][..])
        );
        assert_eq!(
            Ref::parse_placeholder(" inputs.topic ").unwrap().root,
            RefRoot::Input("topic".into())
        );
        assert_eq!(Ref::parse_placeholder("deps.a.b").unwrap().path, vec!["b".to_string()]);
        assert_eq!(Ref::parse_placeholder("item").unwrap().root, RefRoot::Item);
    }

    #[test]
    fn malformed_references_are_errors_with_hints() {
        for bad in ["", "inputs", "inputs.", "deps.x", "a..b", "1abc", "index.x"] {
            let e = Ref::parse_source(bad).unwrap_err();
            assert!(!e.hint.is_empty(), "{bad}");
        }
        assert!(Ref::parse_placeholder("deps").is_err());
        assert!(Ref::parse_placeholder("planner").is_err());
    }

    #[test]
    fn select_follows_fields_and_indices() {
        let v = serde_json::json!({"a": [{"b": 1}]});
        let r = Ref::parse_source("x.a.0.b").unwrap();
        assert_eq!(r.select(&v), Some(&serde_json::json!(1)));
    }
}
