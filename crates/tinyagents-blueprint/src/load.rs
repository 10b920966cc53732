//! Loading blueprints from JSON or `.ta` text, with diagnostics.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, JsonPath, PathSeg, Report, SourceFile, SourceKind, SourceMap, json_source_map};
use crate::ir::Blueprint;
use crate::syntax;

/// A parsed blueprint and the source it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The blueprint.
    pub blueprint: Blueprint,
    /// Its source (for pointing diagnostics at it).
    pub source: Arc<SourceFile>,
}

fn source(name: &str, text: &str, kind: SourceKind, map: SourceMap) -> Arc<SourceFile> {
    Arc::new(SourceFile {
        name: name.to_string(),
        text: text.into(),
        kind,
        map,
    })
}

/// Parses the JSON form. Errors carry the JSON path of the offending value.
pub fn parse_json(name: &str, text: &str) -> Result<Loaded, Report> {
    let map = json_source_map(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<Blueprint, _> = serde_path_to_error::deserialize(&mut de);
    let result = result
        .map_err(|e| (convert_path(e.path()), e.into_inner()))
        .and_then(|bp| {
            de.end().map_err(|e| (JsonPath::root(), e))?;
            Ok(bp)
        });
    match result {
        Ok(blueprint) => Ok(Loaded {
            blueprint,
            source: source(name, text, SourceKind::Json, map),
        }),
        Err((path, inner)) => {
            let inner = &inner;
            let mut refined = None;
            let mut at = path.clone();
            // Each refinement enters one tagged node (a map body is another).
            for _ in 0..crate::syntax::MAX_NESTING {
                match refine_node_error(text, &at) {
                    Some((p, m)) if p != at => {
                        at = p.clone();
                        refined = Some((p, m));
                    }
                    _ => break,
                }
            }
            if let Some((path, message)) = refined {
                let d = Diagnostic::error("blueprint::json", path, message).hint(json_hint(inner));
                return Err(Report::new(Some(source(name, text, SourceKind::Json, map)), vec![d]));
            }
            let offset = line_col_to_offset(text, inner.line(), inner.column());
            let mut d = Diagnostic::error("blueprint::json", path.clone(), inner.to_string()).hint(json_hint(inner));
            if inner.is_syntax() || inner.is_eof() || path.is_root() {
                d = d.span(offset..offset.saturating_add(1).min(text.len()).max(offset));
            }
            Err(Report::new(Some(source(name, text, SourceKind::Json, map)), vec![d]))
        }
    }
}

/// Serde loses the path inside internally tagged enums (nodes are tagged
/// by `kind`), so an error inside a node is reported at the node. This
/// deserializes that node again as its own kind to find the exact path.
fn refine_node_error(text: &str, path: &JsonPath) -> Option<(JsonPath, String)> {
    use crate::ir::{AgentSpec, JoinSpec, MapSpec, ReduceSpec, RouterSpec, SubgraphSpec};
    fn probe<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Option<(Vec<PathSeg>, String)> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(_) => None,
            Err(e) => Some((convert_path(e.path()).0, e.into_inner().to_string())),
        }
    }
    let root: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut v = &root;
    for seg in &path.0 {
        v = match seg {
            PathSeg::Key(k) => v.get(k.as_ref())?,
            PathSeg::Index(i) => v.get(i)?,
        };
    }
    let mut obj = v.as_object()?.clone();
    let kind = obj.remove("kind")?;
    let v = serde_json::Value::Object(obj);
    let (inner, message) = match kind.as_str()? {
        "agent" => probe::<AgentSpec>(v),
        "map" => probe::<MapSpec>(v),
        "reduce" => probe::<ReduceSpec>(v),
        "router" => probe::<RouterSpec>(v),
        "join" => probe::<JoinSpec>(v),
        "subgraph" => probe::<SubgraphSpec>(v),
        _ => None,
    }?;
    let mut full = path.clone();
    full.0.extend(inner);
    Some((full, message))
}

fn json_hint(e: &serde_json::Error) -> &'static str {
    if e.is_syntax() || e.is_eof() {
        "the document is not valid JSON"
    } else {
        "see `blueprint_json_schema()` (`tinyagents schema`) for the fields a blueprint has"
    }
}

fn convert_path(p: &serde_path_to_error::Path) -> JsonPath {
    use serde_path_to_error::Segment;
    JsonPath(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(PathSeg::Index(*index)),
                Segment::Map { key } | Segment::Enum { variant: key } => Some(PathSeg::Key(key.clone().into())),
                Segment::Unknown => None,
            })
            .collect(),
    )
}

fn line_col_to_offset(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let mut o = offset + col.saturating_sub(1).min(l.len());
            while o > 0 && !text.is_char_boundary(o) {
                o -= 1;
            }
            return o;
        }
        offset += l.len();
    }
    text.len()
}

/// Parses the `.ta` text form.
pub fn parse_text(name: &str, text: &str) -> Result<Loaded, Report> {
    match syntax::parse(text) {
        Ok((blueprint, map)) => Ok(Loaded {
            blueprint,
            source: source(name, text, SourceKind::Text, map),
        }),
        Err(d) => Err(Report::new(
            Some(source(name, text, SourceKind::Text, SourceMap::new())),
            vec![d],
        )),
    }
}

/// Parses `text` in the form `kind`.
pub fn parse_source(name: &str, text: &str, kind: SourceKind) -> Result<Loaded, Report> {
    match kind {
        SourceKind::Json => parse_json(name, text),
        SourceKind::Text => parse_text(name, text),
    }
}

/// The form of a file, by extension: `.json` is JSON, anything else `.ta` text.
pub fn kind_of(path: &Path) -> SourceKind {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("json") => SourceKind::Json,
        _ => SourceKind::Text,
    }
}

/// Reads and parses a blueprint file (`.json` or `.ta`).
pub fn load_file(path: &Path) -> Result<Loaded, Report> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Report::new(
            None,
            vec![
                Diagnostic::error("blueprint::io", JsonPath::root(), format!("cannot read {name}: {e}"))
                    .hint("check the path"),
            ],
        )
    })?;
    parse_source(&name, &text, kind_of(path))
}

/// The blueprint as pretty JSON (the canonical JSON form).
pub fn to_json(bp: &Blueprint) -> String {
    serde_json::to_string_pretty(bp).unwrap_or_default()
}

/// A loaded blueprint in canonical form: `.ta` text for a text source,
/// pretty JSON for a JSON source (each form stays in its form).
pub fn format_loaded(loaded: &Loaded) -> String {
    match loaded.source.kind {
        SourceKind::Text => syntax::format_blueprint(&loaded.blueprint),
        SourceKind::Json => to_json(&loaded.blueprint) + "\n",
    }
}

/// Formats a source (see [`format_loaded`]).
pub fn format_source(name: &str, text: &str, kind: SourceKind) -> Result<String, Report> {
    parse_source(name, text, kind).map(|l| format_loaded(&l))
}

/// Formats a file (see [`format_loaded`]); does not write it.
pub fn format_file(path: &Path) -> Result<String, Report> {
    load_file(path).map(|l| format_loaded(&l))
}
