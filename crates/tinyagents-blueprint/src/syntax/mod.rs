//! The `.ta` text form: lexer, parser and canonical formatter.
//!
//! ```text
//! blueprint research_team {
//!   description "Answer a question with a team."
//!   model "gpt-4o-mini"
//!   input topic "The question"
//!   output report
//!
//!   agent planner {
//!     role "You split questions into sub-questions."
//!     task "Split {{inputs.topic}} into 3 sub-questions, as a JSON array of strings."
//!     output schema {"type": "array", "items": {"type": "string"}}
//!     rationale "Independent sub-questions can be researched in parallel."
//!   }
//!   map research over planner {
//!     concurrency 3
//!     agent researcher { task "Answer: {{item}}" tools [web_search] }
//!   }
//!   reduce report from research {
//!     agent writer { task "Write a report from these findings: {{items}}" }
//!   }
//! }
//! ```
//!
//! Grammar (items in a block may come in any order; the formatter prints
//! them in one canonical order):
//!
//! ```text
//! file      = blueprint
//! blueprint = "blueprint" NAME "{" item* "}"
//! item      = "description" STR | "model" STR | "output" NAME
//!           | "input" NAME [":" ("text"|"list"|"object"|"json")] [STR]
//!           | "recursion" "{" ("max_iterations" INT | "max_depth" INT)* "}"
//!           | node | blueprint
//! node      = "agent" NAME "{" field* "}"
//!           | "map" NAME "over" REF "{" ("concurrency" INT | "expected_items" INT
//!                                        | "rationale" STR | node)* "}"
//!           | "reduce" NAME "from" REF ["{" ("rationale" STR | "agent" NAME "{" field* "}")* "}"]
//!           | "router" NAME "on" REF "{" ("when" cond "->" NAME | "else" "->" NAME
//!                                      | "rationale" STR)* "}"
//!           | "join" NAME "of" "[" NAME,* "]" ["{" "rationale" STR "}"]
//!           | "subgraph" NAME "uses" NAME ["{" ("with" NAME "=" STR | "rationale" STR)* "}"]
//! field     = "role" STR | "task" STR | "model" STR | "rationale" STR
//!           | "tools" "[" NAME,* "]" | "after" "[" NAME,* "]"
//!           | "output" STR | "output" "schema" JSON
//!           | "budget" "{" (("tokens"|"cost_usd"|"turns"|"depth"|"descendants"|"timeout_ms") NUM)* "}"
//!           | "estimate" "{" (("input_tokens"|"output_tokens"|"turns") INT)* "}"
//! cond      = "==" JSON | "contains" STR | "present"
//! STR       = JSON string literal | '"""' raw text '"""'
//! NAME, REF = word ([A-Za-z_][A-Za-z0-9_.-]*) or STR;  comments: // or # to end of line
//! ```

mod format;
mod lexer;
mod parser;

pub use format::format_blueprint;
pub use lexer::{Tok, Token, lex};
pub use parser::{MAX_NESTING, parse};
