//! Spans of a JSON document's values by path, for pointing diagnostics at
//! JSON sources. Scans the text once; on text that is not JSON it records
//! what it got to and stops (it never fails, never panics).

use super::{JsonPath, SourceMap};

const MAX_DEPTH: usize = 256;

/// The span of every value of the JSON document `text`, by path.
pub fn json_source_map(text: &str) -> SourceMap {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        map: SourceMap::new(),
    };
    let _ = s.value(JsonPath::root(), 0);
    s.map
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    map: SourceMap,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, path: JsonPath, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'{' => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.peek()? {
                        b'}' => {
                            self.i += 1;
                            break;
                        }
                        b',' => self.i += 1,
                        b'"' => {
                            let key = self.string()?;
                            self.ws();
                            if self.peek()? != b':' {
                                return None;
                            }
                            self.i += 1;
                            self.value(path.key(key), depth + 1)?;
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut n = 0;
                loop {
                    self.ws();
                    match self.peek()? {
                        b']' => {
                            self.i += 1;
                            break;
                        }
                        b',' => self.i += 1,
                        _ => {
                            self.value(path.index(n), depth + 1)?;
                            n += 1;
                        }
                    }
                }
            }
            b'"' => {
                self.string()?;
            }
            _ => {
                while matches!(self.peek(), Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                {
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        self.map.insert(path, start..self.i);
        Some(())
    }

    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    break;
                }
                _ => self.i += 1,
            }
        }
        let raw = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        serde_json::from_str(raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spans_of_nested_values() {
        let text = r#"{"nodes": [{"name": "a", "tools": ["web", "shell"]}]}"#;
        let m = json_source_map(text);
        let p = JsonPath::root().key("nodes").index(0).key("tools").index(1);
        let span = m.lookup(&p).unwrap();
        assert_eq!(&text[span], "\"shell\"");
    }

    #[test]
    fn garbage_and_deep_nesting_do_not_panic() {
        for t in ["", "{", "[[[", "{\"a\":", "\"\\", "}", &"[".repeat(10_000)] {
            let _ = json_source_map(t);
        }
    }
}
