//! Task templates: text with `{{placeholders}}` (see [`Ref`]).

use super::reference::{Ref, RefError};

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// A placeholder, with its byte range in the template source.
    Ref(Ref, std::ops::Range<usize>),
}

/// A parsed template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    /// Its pieces, in order.
    pub parts: Vec<TemplatePart>,
}

/// A template that does not parse, with the byte range of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: &'static str,
    /// Byte range within the template.
    pub range: std::ops::Range<usize>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    message: "unclosed `{{` in template".into(),
                    hint: "close the placeholder with `}}`",
                    range: offset + open..text.len(),
                });
            };
            let inner = &after[..close];
            let range = offset + open..offset + open + 2 + close + 2;
            let r = Ref::parse_placeholder(inner).map_err(|RefError { message, hint }| TemplateError {
                message,
                hint,
                range: range.clone(),
            })?;
            parts.push(TemplatePart::Ref(r, range));
            let consumed = open + 2 + close + 2;
            rest = &rest[consumed..];
            offset += consumed;
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(Self { parts })
    }

    /// The references, in order.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Ref(r, _) => Some(r),
            TemplatePart::Text(_) => None,
        })
    }

    /// Renders the template, asking `lookup` for each reference's text.
    pub fn render(&self, mut lookup: impl FnMut(&Ref) -> String) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TemplatePart::Text(t) => out.push_str(t),
                TemplatePart::Ref(r, _) => out.push_str(&lookup(r)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::reference::RefRoot;

    #[test]
    fn placeholders_are_found_with_their_ranges() {
        let t = Template::parse("Research {{inputs.topic}} using {{ deps.planner.q }}.").unwrap();
        let refs: Vec<_> = t.refs().collect();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1].root, RefRoot::Node("planner".into()));
        let TemplatePart::Ref(_, range) = &t.parts[1] else {
            panic!()
        };
        assert_eq!(range.clone(), 9..25);
        assert_eq!(t.render(|r| r.to_string()), "Research inputs.topic using planner.q.");
    }

    #[test]
    fn unclosed_and_unknown_placeholders_are_errors() {
        assert_eq!(Template::parse("a {{inputs.x").unwrap_err().range, 2..12);
        assert!(Template::parse("{{ nonsense }}").is_err());
        assert!(Template::parse("{{}}").is_err());
    }

    #[test]
    fn plain_text_is_one_part() {
        assert_eq!(
            Template::parse("hello").unwrap().parts,
            vec![TemplatePart::Text("hello".into())]
        );
        assert!(Template::parse("").unwrap().parts.is_empty());
    }
}
