//! The `.ta` lexer: words, strings, numbers and punctuation, with spans.

use std::ops::Range;

use crate::diagnostic::{Diagnostic, JsonPath};

/// A token kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A word: an identifier or keyword, possibly dotted (`reviewer.verdict`).
    Word(String),
    /// A string literal (quoted with JSON escapes, or `"""` raw).
    Str(String),
    /// A number, as written (JSON number syntax).
    Num(String),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `:`
    Colon,
    /// `,`
    Comma,
    /// `=`
    Eq,
    /// `==`
    EqEq,
    /// `->`
    Arrow,
}

impl Tok {
    /// How the token is described in "expected … found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Word(w) => format!("`{w}`"),
            Self::Str(_) => "a string".into(),
            Self::Num(n) => format!("number `{n}`"),
            Self::LBrace => "`{`".into(),
            Self::RBrace => "`}`".into(),
            Self::LBracket => "`[`".into(),
            Self::RBracket => "`]`".into(),
            Self::Colon => "`:`".into(),
            Self::Comma => "`,`".into(),
            Self::Eq => "`=`".into(),
            Self::EqEq => "`==`".into(),
            Self::Arrow => "`->`".into(),
        }
    }
}

/// A token and its byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Kind.
    pub tok: Tok,
    /// Byte range in the source.
    pub span: Range<usize>,
}

fn err(span: Range<usize>, message: impl Into<String>, hint: &str) -> Diagnostic {
    Diagnostic::error("blueprint::syntax", JsonPath::root(), message)
        .span(span)
        .hint(hint)
}

/// Splits `src` into tokens. `//` and `#` start comments to the end of line.
pub fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while let Some(&c) = b.get(i) {
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => i = line_end(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = line_end(b, i),
            b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                i += 1;
                let tok = match c {
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b':' => Tok::Colon,
                    _ => Tok::Comma,
                };
                out.push(Token { tok, span: start..i });
            }
            b'=' => {
                let (tok, n) = if b.get(i + 1) == Some(&b'=') {
                    (Tok::EqEq, 2)
                } else {
                    (Tok::Eq, 1)
                };
                i += n;
                out.push(Token { tok, span: start..i });
            }
            b'-' if b.get(i + 1) == Some(&b'>') => {
                i += 2;
                out.push(Token {
                    tok: Tok::Arrow,
                    span: start..i,
                });
            }
            b'"' if src.get(i..i + 3) == Some("\"\"\"") => {
                let body_start = if b.get(i + 3) == Some(&b'\n') { i + 4 } else { i + 3 };
                let Some(rel) = src.get(body_start..).and_then(|r| r.find("\"\"\"")) else {
                    return Err(err(
                        start..src.len(),
                        "unterminated `\"\"\"` string",
                        "close it with `\"\"\"`",
                    ));
                };
                let body = src.get(body_start..body_start + rel).unwrap_or_default();
                i = body_start + rel + 3;
                out.push(Token {
                    tok: Tok::Str(body.to_string()),
                    span: start..i,
                });
            }
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None | Some(b'\n') => {
                            return Err(err(
                                start..i,
                                "unterminated string",
                                "close the string with `\"`; use `\"\"\"` for text over several lines",
                            ));
                        }
                        Some(b'\\') => {
                            // The escaped character, whole (it may be the
                            // end of the text, or several bytes long): a
                            // span never runs past the source.
                            i += 1;
                            i += src.get(i..).and_then(|r| r.chars().next()).map_or(0, char::len_utf8);
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                let raw = src.get(start..i).unwrap_or_default();
                let s: String = serde_json::from_str(raw).map_err(|e| {
                    err(
                        start..i,
                        format!("invalid string: {e}"),
                        "strings use JSON escapes: \\n \\t \\\" \\\\ \\uXXXX",
                    )
                })?;
                out.push(Token {
                    tok: Tok::Str(s),
                    span: start..i,
                });
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while matches!(b.get(i), Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')) {
                    i += 1;
                }
                let text = src.get(start..i).unwrap_or_default();
                if serde_json::from_str::<serde_json::Number>(text).is_err() {
                    return Err(err(
                        start..i,
                        format!("invalid number `{text}`"),
                        "numbers use JSON syntax",
                    ));
                }
                out.push(Token {
                    tok: Tok::Num(text.to_string()),
                    span: start..i,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                i += 1;
                while let Some(&c) = b.get(i) {
                    let word_char = c.is_ascii_alphanumeric() || c == b'_' || c == b'.';
                    let dash = c == b'-' && b.get(i + 1) != Some(&b'>');
                    if !(word_char || dash) {
                        break;
                    }
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Word(src.get(start..i).unwrap_or_default().to_string()),
                    span: start..i,
                });
            }
            _ => {
                let ch = src.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(err(
                    start..start + ch.len_utf8(),
                    format!("unexpected character {ch:?}"),
                    "names are letters, digits, `_` and `-`; text goes in double quotes",
                ));
            }
        }
    }
    Ok(out)
}

fn line_end(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if c == b'\n' {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_strings_numbers_and_punctuation() {
        assert_eq!(
            kinds(r#"when == "a\"b" -> publish-now // c"#),
            vec![
                Tok::Word("when".into()),
                Tok::EqEq,
                Tok::Str("a\"b".into()),
                Tok::Arrow,
                Tok::Word("publish-now".into()),
            ]
        );
        assert_eq!(
            kinds("x.y -1.5e3"),
            vec![Tok::Word("x.y".into()), Tok::Num("-1.5e3".into())]
        );
    }

    #[test]
    fn raw_strings_keep_their_text_verbatim() {
        assert_eq!(
            kinds("\"\"\"\nline 1\n  \"quoted\"\n\"\"\""),
            vec![Tok::Str("line 1\n  \"quoted\"\n".into())]
        );
    }

    #[test]
    fn errors_have_spans() {
        assert_eq!(lex("a \"open").unwrap_err().span, Some(2..7));
        assert_eq!(lex("a @").unwrap_err().span, Some(2..3));
        assert!(lex("1.2.3").is_err());
        assert!(lex("\"\\q\"").is_err());
        assert!(lex("\"\"\"never closed").is_err());
    }
}
