//! The `.ta` parser: hand-written recursive descent over the token stream.
//!
//! It builds the [`Blueprint`] IR and, on the side, a [`SourceMap`] from
//! JSON paths to source spans, so that every later diagnostic (which only
//! knows a path) points at the right place in the file. Nesting is bounded
//! ([`MAX_NESTING`]), so hostile input cannot overflow the stack.

use std::collections::BTreeMap;
use std::ops::Range;

use super::lexer::{Tok, Token, lex};
use crate::diagnostic::{Diagnostic, JsonPath, SourceMap};
use crate::ir::{
    AgentBudget, AgentSpec, Blueprint, Condition, EstimateHint, ExpectedOutput, InputSpec, JoinSpec, MapSpec, Node,
    RecursionPolicy, ReduceSpec, Route, RouterSpec, SubgraphSpec, ValueType,
};

/// Deepest nesting of blocks and JSON values the parser accepts.
pub const MAX_NESTING: usize = 64;

type PResult<T> = Result<T, Diagnostic>;

/// Parses a `.ta` source into a blueprint and its source map.
pub fn parse(src: &str) -> Result<(Blueprint, SourceMap), Diagnostic> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: src.len(),
        map: SourceMap::new(),
        depth: 0,
    };
    let bp = p.blueprint(JsonPath::root())?;
    if let Some(t) = p.peek_token() {
        return Err(syntax(
            t.span.clone(),
            format!("unexpected {} after the blueprint", t.tok.describe()),
            "a file holds one blueprint; nest others inside it with `blueprint NAME { … }`",
        ));
    }
    Ok((bp, p.map))
}

fn syntax(span: Range<usize>, message: impl Into<String>, hint: &str) -> Diagnostic {
    Diagnostic::error("blueprint::syntax", JsonPath::root(), message)
        .span(span)
        .hint(hint)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    end: usize,
    map: SourceMap,
    depth: usize,
}

impl Parser {
    fn peek_token(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn here(&self) -> Range<usize> {
        self.toks.get(self.pos).map_or(self.end..self.end, |t| t.span.clone())
    }

    fn next(&mut self, expected: &str) -> PResult<Token> {
        match self.toks.get(self.pos) {
            Some(t) => {
                self.pos += 1;
                Ok(t.clone())
            }
            None => Err(syntax(
                self.end..self.end,
                format!("expected {expected}, found the end of the file"),
                "a block may be missing its closing `}`",
            )),
        }
    }

    fn unexpected(&self, t: &Token, expected: &str, hint: &str) -> Diagnostic {
        syntax(
            t.span.clone(),
            format!("expected {expected}, found {}", t.tok.describe()),
            hint,
        )
    }

    fn expect(&mut self, tok: Tok, hint: &str) -> PResult<Range<usize>> {
        let t = self.next(&tok.describe())?;
        if t.tok == tok {
            Ok(t.span)
        } else {
            Err(self.unexpected(&t, &tok.describe(), hint))
        }
    }

    fn keyword(&mut self, kw: &str) -> PResult<Range<usize>> {
        let t = self.next(&format!("`{kw}`"))?;
        match &t.tok {
            Tok::Word(w) if w == kw => Ok(t.span),
            _ => Err(self.unexpected(&t, &format!("`{kw}`"), "see the grammar in the crate docs")),
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A name: a word or a quoted string.
    fn name(&mut self, what: &str) -> PResult<(String, Range<usize>)> {
        let t = self.next(what)?;
        match t.tok {
            Tok::Word(w) => Ok((w, t.span)),
            Tok::Str(s) => Ok((s, t.span)),
            _ => Err(self.unexpected(&t, what, "names are written bare (`planner`) or quoted")),
        }
    }

    fn string(&mut self, what: &str) -> PResult<(String, Range<usize>)> {
        let t = self.next(what)?;
        match t.tok {
            Tok::Str(s) => Ok((s, t.span)),
            _ => Err(self.unexpected(&t, what, "text goes in double quotes, or in `\"\"\"` for several lines")),
        }
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str) -> PResult<(T, Range<usize>)> {
        let t = self.next(what)?;
        match &t.tok {
            Tok::Num(n) => n.parse::<T>().map(|v| (v, t.span.clone())).map_err(|_| {
                syntax(
                    t.span.clone(),
                    format!("`{n}` is not a valid {what}"),
                    "use a whole number in range (cost_usd may have a fraction)",
                )
            }),
            _ => Err(self.unexpected(&t, what, "write a number")),
        }
    }

    fn enter(&mut self, span: Range<usize>) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(syntax(
                span,
                format!("nested more than {MAX_NESTING} levels deep"),
                "flatten the blueprint",
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// `[a, b, "c"]`, recording each element's span at `path[i]`.
    fn name_list(&mut self, what: &str, path: &JsonPath) -> PResult<(Vec<String>, Range<usize>)> {
        let open = self.expect(Tok::LBracket, "lists are written `[a, b]`")?;
        let mut out = Vec::new();
        loop {
            if let Some(Tok::RBracket) = self.peek() {
                let close = self.here();
                self.pos += 1;
                return Ok((out, open.start..close.end));
            }
            let (n, span) = self.name(what)?;
            self.map.insert(path.index(out.len()), span);
            out.push(n);
            if !self.eat(&Tok::Comma) && self.peek() != Some(&Tok::RBracket) {
                let t = self.next("`,` or `]`")?;
                return Err(self.unexpected(&t, "`,` or `]`", "separate list items with commas"));
            }
        }
    }

    fn dup(span: Range<usize>, field: &str) -> Diagnostic {
        syntax(span, format!("`{field}` is given twice"), "keep one")
    }

    fn blueprint(&mut self, path: JsonPath) -> PResult<Blueprint> {
        let kw = self.keyword("blueprint")?;
        self.enter(kw.clone())?;
        let (name, name_span) = self.name("a blueprint name")?;
        self.map.insert(path.clone(), kw.start..name_span.end);
        self.map.insert(path.key("name"), name_span);
        self.expect(Tok::LBrace, "a blueprint's body is in braces")?;
        let mut bp = Blueprint {
            name,
            ..Blueprint::default()
        };
        loop {
            let t = self.next("an item or `}`")?;
            let word = match &t.tok {
                Tok::RBrace => break,
                Tok::Word(w) => w.clone(),
                _ => {
                    return Err(self.unexpected(
                        &t,
                        "an item or `}`",
                        "items: description, model, input, recursion, output, agent, map, reduce, router, join, \
                         subgraph, blueprint",
                    ));
                }
            };
            match word.as_str() {
                "description" => self.set_str(&mut bp.description, "description", &path, "a description")?,
                "model" => self.set_str(&mut bp.model, "model", &path, "a model id")?,
                "output" => {
                    let value = self.name("the output node's name")?;
                    self.set_once(&mut bp.output, value, "output", &path)?;
                }
                "input" => {
                    let (name, span) = self.name("an input name")?;
                    let ipath = path.key("inputs").index(bp.inputs.len());
                    self.map.insert(ipath.clone(), t.span.start..span.end);
                    self.map.insert(ipath.key("name"), span);
                    let mut ty = ValueType::Text;
                    if self.eat(&Tok::Colon) {
                        let (w, wspan) = self.name("a type")?;
                        ty = ValueType::from_keyword(&w).ok_or_else(|| {
                            syntax(
                                wspan.clone(),
                                format!("unknown type `{w}`"),
                                "types: text, list, object, json",
                            )
                        })?;
                        self.map.insert(ipath.key("type"), wspan);
                    }
                    let mut description = None;
                    if let Some(Tok::Str(_)) = self.peek() {
                        let (d, dspan) = self.string("a description")?;
                        self.map.insert(ipath.key("description"), dspan);
                        description = Some(d);
                    }
                    bp.inputs.push(InputSpec { name, ty, description });
                }
                "recursion" => self.block_once(&mut bp.recursion, t.span, "recursion", &path, Self::recursion)?,
                "blueprint" => {
                    self.pos -= 1;
                    let child = self.blueprint(path.key("blueprints").index(bp.blueprints.len()))?;
                    bp.blueprints.push(child);
                }
                _ => {
                    self.pos -= 1;
                    let npath = path.key("nodes").index(bp.nodes.len());
                    let node = self.node(&npath)?;
                    bp.nodes.push(node);
                }
            }
        }
        self.leave();
        Ok(bp)
    }

    fn recursion(&mut self, path: &JsonPath) -> PResult<RecursionPolicy> {
        let mut r = RecursionPolicy::default();
        self.number_block(
            path,
            "`recursion { max_iterations 3 max_depth 2 }`",
            "recursion",
            &["max_iterations", "max_depth"],
            |p, field| {
                let slot = if field == "max_iterations" {
                    &mut r.max_iterations
                } else {
                    &mut r.max_depth
                };
                Ok(slot.replace(p.number("count")?.0).is_some())
            },
        )?;
        Ok(r)
    }

    /// `{ field NUMBER … }` with fields from `fields`: `set` parses and
    /// stores one value and says whether the field was already set.
    fn number_block(
        &mut self,
        path: &JsonPath,
        example: &str,
        what: &str,
        fields: &[&'static str],
        mut set: impl FnMut(&mut Self, &'static str) -> PResult<bool>,
    ) -> PResult<()> {
        self.expect(Tok::LBrace, example)?;
        let hint = format!("{what} fields: {}", fields.join(", "));
        let expected = format!("a {what} field or `}}`");
        loop {
            let t = self.next(&expected)?;
            let field = match &t.tok {
                Tok::RBrace => return Ok(()),
                Tok::Word(w) => match fields.iter().find(|f| **f == w) {
                    Some(f) => *f,
                    None => return Err(syntax(t.span, format!("unknown {what} field `{w}`"), &hint)),
                },
                _ => return Err(self.unexpected(&t, &expected, &hint)),
            };
            let span = self.here();
            if set(self, field)? {
                return Err(Self::dup(span, field));
            }
            self.map.insert(path.key(field), span);
        }
    }

    fn node(&mut self, path: &JsonPath) -> PResult<Node> {
        let t = self.next("a node")?;
        let Tok::Word(kw) = &t.tok else {
            return Err(self.unexpected(&t, "a node", "nodes: agent, map, reduce, router, join, subgraph"));
        };
        let kw = kw.clone();
        self.enter(t.span.clone())?;
        let (name, name_span) = self.name("a node name")?;
        self.map.insert(path.clone(), t.span.start..name_span.end);
        self.map.insert(path.key("name"), name_span.clone());
        let node = match kw.as_str() {
            "agent" => Node::Agent(self.agent_body(name, name_span, path)?),
            "map" => Node::Map(self.map_body(name, path)?),
            "reduce" => Node::Reduce(self.reduce_body(name, path)?),
            "router" => Node::Router(self.router_body(name, path)?),
            "join" => Node::Join(self.join_body(name, path)?),
            "subgraph" => Node::Subgraph(self.subgraph_body(name, path)?),
            other => {
                return Err(syntax(
                    t.span,
                    format!("unknown item `{other}`"),
                    "items: description, model, input, recursion, output, agent, map, reduce, router, join, \
                     subgraph, blueprint",
                ));
            }
        };
        self.leave();
        Ok(node)
    }

    /// Fills a field that may be given once, mapping its span.
    fn set_once<T>(
        &mut self,
        slot: &mut Option<T>,
        (value, span): (T, Range<usize>),
        field: &str,
        path: &JsonPath,
    ) -> PResult<()> {
        if slot.replace(value).is_some() {
            return Err(Self::dup(span, field));
        }
        self.map.insert(path.key(field.to_string()), span);
        Ok(())
    }

    fn set_str(&mut self, slot: &mut Option<String>, field: &str, path: &JsonPath, what: &str) -> PResult<()> {
        let value = self.string(what)?;
        self.set_once(slot, value, field, path)
    }

    /// Parses a block field (`budget { … }`, `recursion { … }`) that may be
    /// given once; `at` is the span of its keyword.
    fn block_once<T>(
        &mut self,
        slot: &mut Option<T>,
        at: Range<usize>,
        field: &str,
        path: &JsonPath,
        parse: impl FnOnce(&mut Self, &JsonPath) -> PResult<T>,
    ) -> PResult<()> {
        if slot.is_some() {
            return Err(Self::dup(at, field));
        }
        let fpath = path.key(field.to_string());
        self.map.insert(fpath.clone(), at);
        *slot = Some(parse(self, &fpath)?);
        Ok(())
    }

    fn agent_body(&mut self, name: String, name_span: Range<usize>, path: &JsonPath) -> PResult<AgentSpec> {
        self.expect(Tok::LBrace, "an agent's fields are in braces")?;
        let mut a = AgentSpec {
            name,
            ..AgentSpec::default()
        };
        let mut task = None;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let t = self.next("an agent field or `}`")?;
            let field = match &t.tok {
                Tok::RBrace => break,
                Tok::Word(w) => w.clone(),
                _ => {
                    return Err(self.unexpected(
                        &t,
                        "an agent field or `}`",
                        "agent fields: role, task, model, tools, output, rationale, after, budget, estimate",
                    ));
                }
            };
            if seen.contains(&field) {
                return Err(Self::dup(t.span, &field));
            }
            seen.push(field.clone());
            match field.as_str() {
                "role" => self.set_str(&mut a.role, "role", path, "the role text")?,
                "task" => self.set_str(&mut task, "task", path, "the task template")?,
                "model" => self.set_str(&mut a.model, "model", path, "a model id")?,
                "rationale" => self.set_str(&mut a.rationale, "rationale", path, "the rationale")?,
                "tools" | "after" => {
                    let (list, span) = self.name_list("a name", &path.key(field.clone()))?;
                    let slot = if field == "tools" { &mut a.tools } else { &mut a.after };
                    *slot = list;
                    self.map.insert(path.key(field.clone()), span);
                }
                "output" => {
                    let out = if let Some(Tok::Word(w)) = self.peek() {
                        if w != "schema" {
                            let t = self.next("`schema` or a string")?;
                            return Err(self.unexpected(
                                &t,
                                "`schema` or a string",
                                "write `output \"a description\"` or `output schema { …JSON Schema… }`",
                            ));
                        }
                        self.pos += 1;
                        let start = self.here();
                        let v = self.json(&path.key("output"))?;
                        match v {
                            serde_json::Value::Object(m) => ExpectedOutput::Schema(m),
                            _ => {
                                return Err(syntax(
                                    start,
                                    "an output schema must be a JSON object",
                                    "for example `output schema {\"type\": \"array\"}`",
                                ));
                            }
                        }
                    } else {
                        let (s, span) = self.string("an output description or `schema`")?;
                        self.map.insert(path.key("output"), span);
                        ExpectedOutput::Description(s)
                    };
                    if a.output.replace(out).is_some() {
                        return Err(Self::dup(t.span, "output"));
                    }
                }
                "budget" => self.block_once(&mut a.budget, t.span, "budget", path, Self::budget)?,
                "estimate" => self.block_once(&mut a.estimate, t.span, "estimate", path, Self::estimate)?,
                _ => {
                    return Err(syntax(
                        t.span,
                        format!("unknown agent field `{field}`"),
                        "agent fields: role, task, model, tools, output, rationale, after, budget, estimate",
                    ));
                }
            }
        }
        a.task = task.ok_or_else(|| {
            syntax(
                name_span,
                format!("agent `{}` has no task", a.name),
                "add `task \"…\"`: what the agent should do, e.g. `task \"Summarize {{inputs.topic}}\"`",
            )
        })?;
        Ok(a)
    }

    fn budget(&mut self, path: &JsonPath) -> PResult<AgentBudget> {
        let mut b = AgentBudget::default();
        self.number_block(
            path,
            "`budget { tokens 1000 cost_usd 0.05 }`",
            "budget",
            &["tokens", "cost_usd", "turns", "depth", "descendants", "timeout_ms"],
            |p, field| {
                Ok(match field {
                    "tokens" => b.tokens.replace(p.number("token count")?.0).is_some(),
                    "cost_usd" => b.cost_usd.replace(p.number("cost in USD")?.0).is_some(),
                    "turns" => b.turns.replace(p.number("turn count")?.0).is_some(),
                    "depth" => b.depth.replace(p.number("depth")?.0).is_some(),
                    "descendants" => b.descendants.replace(p.number("descendant count")?.0).is_some(),
                    _ => b.timeout_ms.replace(p.number("timeout in ms")?.0).is_some(),
                })
            },
        )?;
        Ok(b)
    }

    fn estimate(&mut self, path: &JsonPath) -> PResult<EstimateHint> {
        let mut e = EstimateHint::default();
        self.number_block(
            path,
            "`estimate { input_tokens 500 output_tokens 200 turns 2 }`",
            "estimate",
            &["input_tokens", "output_tokens", "turns"],
            |p, field| {
                Ok(match field {
                    "input_tokens" => e.input_tokens.replace(p.number("token count")?.0).is_some(),
                    "output_tokens" => e.output_tokens.replace(p.number("token count")?.0).is_some(),
                    _ => e.turns.replace(p.number("turn count")?.0).is_some(),
                })
            },
        )?;
        Ok(e)
    }

    fn map_body(&mut self, name: String, path: &JsonPath) -> PResult<MapSpec> {
        self.keyword("over")?;
        let (over, over_span) = self.name("the list to map over")?;
        self.map.insert(path.key("over"), over_span);
        let open = self.expect(Tok::LBrace, "a map's body is in braces")?;
        let mut each: Option<Node> = None;
        let (mut concurrency, mut expected_items, mut rationale) = (None, None, None);
        loop {
            let t = self.next("a map field or `}`")?;
            let field = match &t.tok {
                Tok::RBrace => break,
                Tok::Word(w) => w.clone(),
                _ => {
                    return Err(self.unexpected(
                        &t,
                        "a map field or `}`",
                        "map fields: concurrency, expected_items, rationale, and one agent or subgraph",
                    ));
                }
            };
            match field.as_str() {
                "concurrency" | "expected_items" => {
                    let (v, span) = self.number::<u32>("count")?;
                    let slot = if field == "concurrency" {
                        &mut concurrency
                    } else {
                        &mut expected_items
                    };
                    if slot.replace(v).is_some() {
                        return Err(Self::dup(span, &field));
                    }
                    self.map.insert(path.key(field.clone()), span);
                }
                "rationale" => self.set_str(&mut rationale, "rationale", path, "the rationale")?,
                _ => {
                    self.pos -= 1;
                    let node = self.node(&path.key("each"))?;
                    if each.replace(node).is_some() {
                        return Err(syntax(
                            t.span,
                            "a map has one body",
                            "map over a subgraph to run several nodes per item",
                        ));
                    }
                }
            }
        }
        let each = each.ok_or_else(|| {
            syntax(
                open,
                format!("map `{name}` has no body"),
                "add the agent (or subgraph) that runs per item: `agent worker { task \"{{item}}\" }`",
            )
        })?;
        Ok(MapSpec {
            name,
            over,
            each: Box::new(each),
            concurrency,
            expected_items,
            rationale,
        })
    }

    fn reduce_body(&mut self, name: String, path: &JsonPath) -> PResult<ReduceSpec> {
        self.keyword("from")?;
        let (from, span) = self.name("the list to reduce")?;
        self.map.insert(path.key("from"), span);
        let mut r = ReduceSpec {
            name,
            from,
            agent: None,
            rationale: None,
        };
        if !self.eat(&Tok::LBrace) {
            return Ok(r);
        }
        loop {
            let t = self.next("`rationale`, `agent` or `}`")?;
            match &t.tok {
                Tok::RBrace => return Ok(r),
                Tok::Word(w) if w == "rationale" => {
                    self.set_str(&mut r.rationale, "rationale", path, "the rationale")?
                }
                Tok::Word(w) if w == "agent" => {
                    let (n, nspan) = self.name("the reducer agent's name")?;
                    let apath = path.key("agent");
                    self.map.insert(apath.clone(), t.span.start..nspan.end);
                    self.map.insert(apath.key("name"), nspan.clone());
                    let a = self.agent_body(n, nspan, &apath)?;
                    if r.agent.replace(a).is_some() {
                        return Err(syntax(t.span, "a reduce has one agent", "keep one"));
                    }
                }
                _ => return Err(self.unexpected(&t, "`rationale`, `agent` or `}`", "reduce fields: rationale, agent")),
            }
        }
    }

    fn router_body(&mut self, name: String, path: &JsonPath) -> PResult<RouterSpec> {
        self.keyword("on")?;
        let (on, span) = self.name("the value to route on")?;
        self.map.insert(path.key("on"), span);
        self.expect(Tok::LBrace, "a router's routes are in braces")?;
        let mut r = RouterSpec {
            name,
            on,
            routes: Vec::new(),
            default: None,
            rationale: None,
        };
        let hint = "routes: `when == \"x\" -> node`, `when contains \"x\" -> node`, `when present -> node`, \
                    `else -> node`";
        loop {
            let t = self.next("`when`, `else`, `rationale` or `}`")?;
            match &t.tok {
                Tok::RBrace => return Ok(r),
                Tok::Word(w) if w == "rationale" => {
                    self.set_str(&mut r.rationale, "rationale", path, "the rationale")?
                }
                Tok::Word(w) if w == "when" => {
                    let rpath = path.key("routes").index(r.routes.len());
                    let c = self.next("a condition")?;
                    let when = match &c.tok {
                        Tok::EqEq => Condition::Equals(self.json(&rpath.key("when").key("equals"))?),
                        Tok::Word(w) if w == "contains" => Condition::Contains(self.string("the text to look for")?.0),
                        Tok::Word(w) if w == "present" => Condition::Present,
                        _ => return Err(self.unexpected(&c, "`==`, `contains` or `present`", hint)),
                    };
                    self.expect(Tok::Arrow, hint)?;
                    let (to, to_span) = self.name("the target node")?;
                    self.map.insert(rpath.clone(), t.span.start..to_span.end);
                    self.map.insert(rpath.key("to"), to_span);
                    r.routes.push(Route { when, to });
                }
                Tok::Word(w) if w == "else" => {
                    self.expect(Tok::Arrow, hint)?;
                    let (to, span) = self.name("the default node")?;
                    if r.default.replace(to).is_some() {
                        return Err(Self::dup(span, "else"));
                    }
                    self.map.insert(path.key("default"), span);
                }
                _ => return Err(self.unexpected(&t, "`when`, `else`, `rationale` or `}`", hint)),
            }
        }
    }

    fn join_body(&mut self, name: String, path: &JsonPath) -> PResult<JoinSpec> {
        self.keyword("of")?;
        let (of, span) = self.name_list("a node name", &path.key("of"))?;
        self.map.insert(path.key("of"), span);
        let mut j = JoinSpec {
            name,
            of,
            rationale: None,
        };
        if self.eat(&Tok::LBrace) {
            loop {
                let t = self.next("`rationale` or `}`")?;
                match &t.tok {
                    Tok::RBrace => break,
                    Tok::Word(w) if w == "rationale" => {
                        self.set_str(&mut j.rationale, "rationale", path, "the rationale")?;
                    }
                    _ => return Err(self.unexpected(&t, "`rationale` or `}`", "join fields: rationale")),
                }
            }
        }
        Ok(j)
    }

    fn subgraph_body(&mut self, name: String, path: &JsonPath) -> PResult<SubgraphSpec> {
        self.keyword("uses")?;
        let (uses, span) = self.name("the blueprint or graph it uses")?;
        self.map.insert(path.key("uses"), span);
        let mut s = SubgraphSpec {
            name,
            uses,
            with: BTreeMap::new(),
            rationale: None,
        };
        if self.eat(&Tok::LBrace) {
            loop {
                let t = self.next("`with`, `rationale` or `}`")?;
                match &t.tok {
                    Tok::RBrace => break,
                    Tok::Word(w) if w == "rationale" => {
                        self.set_str(&mut s.rationale, "rationale", path, "the rationale")?;
                    }
                    Tok::Word(w) if w == "with" => {
                        let (k, kspan) = self.name("an input name")?;
                        self.expect(Tok::Eq, "`with NAME = \"template\"`")?;
                        let (v, vspan) = self.string("the input's template")?;
                        if s.with.insert(k.clone(), v).is_some() {
                            return Err(Self::dup(kspan, &k));
                        }
                        self.map.insert(path.key("with").key(k), kspan.start..vspan.end);
                    }
                    _ => {
                        return Err(self.unexpected(
                            &t,
                            "`with`, `rationale` or `}`",
                            "subgraph fields: with, rationale",
                        ));
                    }
                }
            }
        }
        Ok(s)
    }

    /// A JSON value written inline (schemas, `==` operands).
    fn json(&mut self, path: &JsonPath) -> PResult<serde_json::Value> {
        let t = self.next("a JSON value")?;
        self.enter(t.span.clone())?;
        let v = match t.tok {
            Tok::Str(s) => serde_json::Value::String(s),
            Tok::Num(n) => serde_json::from_str(&n).map_err(|e| {
                syntax(
                    t.span.clone(),
                    format!("invalid number: {e}"),
                    "numbers use JSON syntax",
                )
            })?,
            Tok::Word(w) if w == "true" => serde_json::Value::Bool(true),
            Tok::Word(w) if w == "false" => serde_json::Value::Bool(false),
            Tok::Word(w) if w == "null" => serde_json::Value::Null,
            Tok::LBracket => {
                let mut items = Vec::new();
                loop {
                    if self.eat(&Tok::RBracket) {
                        break;
                    }
                    items.push(self.json(&path.index(items.len()))?);
                    if !self.eat(&Tok::Comma) && self.peek() != Some(&Tok::RBracket) {
                        let t = self.next("`,` or `]`")?;
                        return Err(self.unexpected(&t, "`,` or `]`", "JSON arrays separate items with commas"));
                    }
                }
                serde_json::Value::Array(items)
            }
            Tok::LBrace => {
                let mut obj = serde_json::Map::new();
                loop {
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    let (k, _) = self.string("a JSON object key")?;
                    self.expect(Tok::Colon, "JSON object entries are `\"key\": value`")?;
                    let v = self.json(&path.key(k.clone()))?;
                    obj.insert(k, v);
                    if !self.eat(&Tok::Comma) && self.peek() != Some(&Tok::RBrace) {
                        let t = self.next("`,` or `}`")?;
                        return Err(self.unexpected(&t, "`,` or `}`", "JSON objects separate entries with commas"));
                    }
                }
                serde_json::Value::Object(obj)
            }
            _ => {
                return Err(self.unexpected(
                    &t,
                    "a JSON value",
                    "write JSON: a string, number, object, array, true, false or null",
                ));
            }
        };
        self.leave();
        let end = self
            .toks
            .get(self.pos.saturating_sub(1))
            .map_or(t.span.end, |x| x.span.end);
        self.map.insert(path.clone(), t.span.start..end);
        Ok(v)
    }
}
