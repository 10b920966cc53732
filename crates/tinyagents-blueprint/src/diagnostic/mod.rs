//! Diagnostics: what is wrong, where, and what to do about it.
//!
//! Every problem the loader, the parser or a compiler pass finds is a
//! [`Diagnostic`] with a stable code, a message, a hint, and a location: a
//! [`JsonPath`] into the blueprint (`$.nodes[2].tools[0]`), and once the
//! source is known, a byte span. Passes only know paths; a [`SourceFile`]
//! carries the map from paths to spans (built by the `.ta` parser, or by
//! scanning the JSON text), so the same diagnostic points at the source
//! span of a `.ta` file and at the JSON path of a JSON document.
//!
//! Rendering is `miette`'s graphical handler ([`Report::render`]); the
//! text handed to a model (a refused `spawn_agents` call, a plan that does
//! not compile) is [`Report::render_plain`]: one line per diagnostic with
//! its path and hint, which a model can act on without a terminal.

mod json_map;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

pub use json_map::json_source_map;

/// Error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The blueprint cannot be compiled.
    Error,
    /// Compiles, but probably not what was meant.
    Warning,
}

/// One step of a [`JsonPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// An object field (static names cost no allocation).
    Key(Cow<'static, str>),
    /// An array element.
    Index(usize),
}

/// A location in a blueprint, as a JSON path (`$.nodes[2].tools[0]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct JsonPath(pub Vec<PathSeg>);

impl JsonPath {
    /// The root (`$`).
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path followed by field `key`.
    #[must_use]
    pub fn key(&self, key: impl Into<Cow<'static, str>>) -> Self {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
        v.push(PathSeg::Key(key.into()));
        Self(v)
    }

    /// This path followed by element `i`.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.extend_from_slice(&self.0);
        v.push(PathSeg::Index(i));
        Self(v)
    }

    /// The enclosing path (the root's parent is the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        let mut v = self.0.clone();
        v.pop();
        Self(v)
    }

    /// True at the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for s in &self.0 {
            match s {
                PathSeg::Key(k) => write!(f, ".{k}")?,
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// One problem found in a blueprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, e.g. `blueprint::capability`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// Where, as a path into the blueprint.
    pub path: JsonPath,
    /// Where, as a byte range of the source (set by the parser, or resolved
    /// from `path` when the report is built).
    pub span: Option<Range<usize>>,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error at `path`.
    pub fn error(code: &'static str, path: JsonPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            path,
            span: None,
            hint: None,
        }
    }

    /// A warning at `path`.
    pub fn warning(code: &'static str, path: JsonPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, path, message)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the source span.
    #[must_use]
    pub fn span(mut self, span: Range<usize>) -> Self {
        self.span = Some(span);
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}[{}] at {}: {}", self.code, self.path, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// Spans of the values of a blueprint source, by JSON path.
#[derive(Clone, Debug, Default)]
pub struct SourceMap(HashMap<JsonPath, Range<usize>>);

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the span of the value at `path` (the first record wins).
    pub fn insert(&mut self, path: JsonPath, span: Range<usize>) {
        self.0.entry(path).or_insert(span);
    }

    /// The span of `path`, or of its nearest enclosing path that has one.
    pub fn lookup(&self, path: &JsonPath) -> Option<Range<usize>> {
        let mut p = path.clone();
        loop {
            if let Some(s) = self.0.get(&p) {
                return Some(s.clone());
            }
            if p.is_root() {
                return None;
            }
            p = p.parent();
        }
    }

    /// Number of recorded paths.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Which surface form a source is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// JSON.
    Json,
    /// The `.ta` text form.
    Text,
}

/// A blueprint source: its name, text, form and span map.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Display name (a file path, or `<model>` for model output).
    pub name: String,
    /// The text.
    pub text: Arc<str>,
    /// JSON or text.
    pub kind: SourceKind,
    /// Spans by JSON path.
    pub map: SourceMap,
}

/// Diagnostics together with the source they point into.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The source, when there is one.
    pub source: Option<Arc<SourceFile>>,
    /// The diagnostics, errors first in the order found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// A report of `diagnostics` about `source`; spans are resolved from paths.
    pub fn new(source: Option<Arc<SourceFile>>, mut diagnostics: Vec<Diagnostic>) -> Self {
        if let Some(src) = &source {
            for d in &mut diagnostics {
                if d.span.is_none() {
                    d.span = src.map.lookup(&d.path);
                }
            }
        }
        diagnostics.sort_by_key(|d| !d.is_error());
        Self { source, diagnostics }
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Renders every diagnostic with `miette`'s graphical handler (no colour).
    pub fn render(&self) -> String {
        render_diagnostics(&self.diagnostics, self.source.as_deref())
    }

    /// One line per diagnostic (path, message, hint): for a model to act on.
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.error_count();
        let warnings = self.diagnostics.len() - errors;
        write!(f, "{errors} error(s), {warnings} warning(s)")?;
        if let Some(first) = self.diagnostics.first() {
            write!(f, "; first: {first}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// One diagnostic in the shape `miette` renders.
#[derive(Debug)]
struct MietteDiagnostic<'a> {
    diag: &'a Diagnostic,
    source: Option<miette::NamedSource<Arc<str>>>,
}

impl fmt::Display for MietteDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for MietteDiagnostic<'_> {}

impl miette::Diagnostic for MietteDiagnostic<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        let path = &self.diag.path;
        Some(match &self.diag.hint {
            Some(h) => Box::new(format!("{h}\nat {path}")),
            None => Box::new(format!("at {path}")),
        })
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.diag.span.clone()?;
        self.source.as_ref()?;
        let label = miette::LabeledSpan::new_with_span(Some("here".into()), span);
        Some(Box::new(std::iter::once(label)))
    }
}

/// Renders diagnostics with `miette` (graphical, no colour), pointing into
/// `source` when given. Spans outside the source are dropped, never a panic.
pub fn render_diagnostics(diagnostics: &[Diagnostic], source: Option<&SourceFile>) -> String {
    let handler = miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    for d in diagnostics {
        let mut d = d.clone();
        if let Some(src) = source {
            if d.span.is_none() {
                d.span = src.map.lookup(&d.path);
            }
            d.span = d.span.filter(|s| s.start <= s.end && s.end <= src.text.len());
        } else {
            d.span = None;
        }
        let named = source.map(|s| miette::NamedSource::new(s.name.clone(), s.text.clone()));
        let md = MietteDiagnostic {
            diag: &d,
            source: named,
        };
        if handler.render_report(&mut out, &md).is_err() {
            out.push_str(&d.to_string());
        }
        out.push('\n');
    }
    out
}

/// Edit distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The closest of `candidates` to `name`, if close enough to suggest.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_display_like_json_paths() {
        let p = JsonPath::root().key("nodes").index(2).key("tools").index(0);
        assert_eq!(p.to_string(), "$.nodes[2].tools[0]");
        assert_eq!(p.parent().to_string(), "$.nodes[2].tools");
    }

    #[test]
    fn lookup_falls_back_to_the_enclosing_path() {
        let mut m = SourceMap::new();
        m.insert(JsonPath::root().key("nodes").index(1), 10..20);
        let deep = JsonPath::root().key("nodes").index(1).key("budget").key("tokens");
        assert_eq!(m.lookup(&deep), Some(10..20));
        assert_eq!(m.lookup(&JsonPath::root().key("output")), None);
    }

    #[test]
    fn render_uses_miette_and_shows_code_hint_and_source_line() {
        let text: Arc<str> = "agent a {\n  tools [shell]\n}\n".into();
        let src = SourceFile {
            name: "team.ta".into(),
            text,
            kind: SourceKind::Text,
            map: SourceMap::new(),
        };
        let d = Diagnostic::error("blueprint::capability", JsonPath::root(), "tool `shell` is not granted")
            .hint("remove it")
            .span(19..24);
        let out = render_diagnostics(&[d], Some(&src));
        assert!(out.contains("blueprint::capability"), "{out}");
        assert!(out.contains("tools [shell]"), "{out}");
        assert!(out.contains("remove it"), "{out}");
        assert!(out.contains("team.ta"), "{out}");
    }

    #[test]
    fn out_of_range_spans_are_dropped_not_panicking() {
        let src = SourceFile {
            name: "x".into(),
            text: "ab".into(),
            kind: SourceKind::Json,
            map: SourceMap::new(),
        };
        let d = Diagnostic::error("c", JsonPath::root(), "m").span(5..90);
        assert!(render_diagnostics(&[d], Some(&src)).contains('m'));
    }

    #[test]
    fn did_you_mean_suggests_close_names_only() {
        assert_eq!(did_you_mean("reseacher", ["researcher", "writer"]), Some("researcher"));
        assert_eq!(did_you_mean("zzz", ["researcher", "writer"]), None);
    }
}
