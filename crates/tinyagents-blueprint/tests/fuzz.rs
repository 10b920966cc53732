//! Property tests over the text parser, the JSON loader and the compiler:
//! no input makes them panic, and every malformed input yields at least one
//! diagnostic (with a span inside the source, renderable by miette).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{EXAMPLES, examples_dir};
use proptest::prelude::*;
use tinyagents_blueprint::{Blueprint, CompileOptions, Report, compile, format_blueprint, parse_json, parse_text};

fn check_report(src: &str, report: &Report) {
    assert!(
        !report.diagnostics.is_empty(),
        "an error without a diagnostic for {src:?}"
    );
    for d in &report.diagnostics {
        if let Some(span) = &d.span {
            assert!(
                span.start <= span.end && span.end <= src.len(),
                "span {span:?} outside {} bytes",
                src.len()
            );
        }
        assert!(!d.message.is_empty());
    }
    let _ = report.render();
}

fn check_text(src: &str) {
    match parse_text("fuzz.ta", src) {
        Ok(loaded) => {
            let text = format_blueprint(&loaded.blueprint);
            let again = parse_text("fuzz.ta", &text).unwrap_or_else(|r| panic!("{}\n{text}", r.render()));
            assert_eq!(again.blueprint, loaded.blueprint, "format is lossless");
            let _ = compile(&loaded.blueprint, &CompileOptions::new().default_model("m"));
        }
        Err(report) => check_report(src, &report),
    }
}

fn check_json(src: &str) {
    match parse_json("fuzz.json", src) {
        Ok(loaded) => {
            let _ = compile(&loaded.blueprint, &CompileOptions::new().default_model("m"));
            let text = format_blueprint(&loaded.blueprint);
            let again = parse_text("fuzz.ta", &text).unwrap_or_else(|r| panic!("{}\n{text}", r.render()));
            assert_eq!(again.blueprint, loaded.blueprint);
        }
        Err(report) => check_report(src, &report),
    }
}

const TOKENS: &[&str] = &[
    "blueprint",
    "agent",
    "map",
    "reduce",
    "router",
    "join",
    "subgraph",
    "over",
    "from",
    "on",
    "of",
    "uses",
    "with",
    "when",
    "else",
    "contains",
    "present",
    "task",
    "role",
    "tools",
    "after",
    "output",
    "schema",
    "budget",
    "tokens",
    "cost_usd",
    "estimate",
    "input",
    "recursion",
    "max_iterations",
    "model",
    "rationale",
    "concurrency",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "=",
    "==",
    "->",
    "\"x\"",
    "\"{{deps.a}}\"",
    "\"{{item}}\"",
    "\"\"\"\nraw\n\"\"\"",
    "a",
    "b",
    "a.b",
    "inputs.q",
    "1",
    "-2.5",
    "1e999",
    "true",
    "null",
    "list",
    "// c\n",
    "\"\\u00e9\"",
    "\"\\q\"",
    "\"open",
    "@",
    "é",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|t| t.join(" "))
}

fn mutate(base: String) -> impl Strategy<Value = String> {
    let len = base.len();
    (0..=len, 0..4usize, "[ -~]{0,3}").prop_map(move |(at, del, ins)| {
        let mut s = base.clone();
        let mut at = at.min(s.len());
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + del).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.replace_range(at..end, &ins);
        s
    })
}

fn example(ext: &str) -> impl Strategy<Value = String> {
    let texts: Vec<String> = EXAMPLES
        .iter()
        .map(|n| std::fs::read_to_string(examples_dir().join(format!("{n}.{ext}"))).unwrap())
        .collect();
    prop::sample::select(texts).prop_flat_map(mutate)
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "agent",
            "map",
            "router",
            "a",
            "b",
            "x",
            "{{deps.a}}",
            "inputs.q",
            "present"
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "name",
                    "kind",
                    "task",
                    "nodes",
                    "tools",
                    "over",
                    "each",
                    "on",
                    "routes",
                    "when",
                    "to",
                    "of",
                    "uses",
                    "with",
                    "inputs",
                    "output",
                    "blueprints",
                    "equals",
                    "contains",
                    "from",
                    "agent",
                ])
                .prop_map(str::to_string),
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(common::proptest_config(400))]

    #[test]
    fn the_text_parser_never_panics_on_arbitrary_text(src in ".{0,200}") {
        check_text(&src);
    }

    #[test]
    fn the_text_parser_never_panics_on_token_soup(src in token_soup()) {
        check_text(&src);
    }

    #[test]
    fn mutated_text_examples_parse_or_diagnose(src in example("ta")) {
        check_text(&src);
    }

    #[test]
    fn the_json_loader_never_panics_on_arbitrary_text(src in ".{0,200}") {
        check_json(&src);
    }

    #[test]
    fn mutated_json_examples_load_or_diagnose(src in example("json")) {
        check_json(&src);
    }

    #[test]
    fn arbitrary_json_documents_load_or_diagnose(v in json_value()) {
        check_json(&v.to_string());
    }
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_stack_overflow() {
    let deep_blueprints = "blueprint a { ".repeat(50_000);
    let deep_json = "[".repeat(100_000);
    let deep_schema = format!(
        "blueprint a {{ agent x {{ task \"t\" output schema {}",
        "{\"a\": ".repeat(50_000)
    );
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            check_text(&deep_blueprints);
            check_text(&deep_schema);
            check_json(&deep_json);
            let nested_nodes = format!(
                "{{\"name\": \"t\", \"nodes\": [{}]}}",
                "{\"kind\": \"map\", \"name\": \"m\", \"over\": \"x\", \"each\": ".repeat(10_000)
            );
            check_json(&nested_nodes);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn every_kind_of_malformed_input_yields_a_diagnostic() {
    let cases = [
        "",
        "blueprint",
        "blueprint t",
        "blueprint t {",
        "blueprint t { agent }",
        "blueprint t { agent a { } }",
        "blueprint t { agent a { task 1 } }",
        "blueprint t { agent a { task \"x\" task \"y\" } }",
        "blueprint t { router r on x { when ~ } }",
        "blueprint t { map m over x { } }",
        "blueprint t { input q: nonsense }",
        "blueprint t { agent a { task \"x\" output schema [1] } }",
        "blueprint t { agent a { task \"x\" budget { tokens -1 } } }",
        "blueprint t { } trailing",
        "blueprint t { agent a { task \"unterminated } }",
        // A string cut right after a backslash, or escaping a multi-byte
        // character: the span stays inside the source.
        "\"\\",
        "blueprint t { agent a { task \"x\\",
        "blueprint t { agent a { task \"\\é\" } }",
    ];
    for src in cases {
        let report = parse_text("t.ta", src)
            .err()
            .unwrap_or_else(|| panic!("{src:?} parsed"));
        check_report(src, &report);
    }
    for src in [
        "",
        "{",
        "[]",
        "{\"name\": 1}",
        "{\"name\": \"t\", \"nodes\": [{\"kind\": \"robot\"}]}",
        "{} {}",
    ] {
        let report = parse_json("t.json", src)
            .err()
            .unwrap_or_else(|| panic!("{src:?} loaded"));
        check_report(src, &report);
    }
    // Semantically malformed blueprints are diagnosed by the compiler.
    let bp: Blueprint =
        serde_json::from_str(r#"{"name": "t", "nodes": [{"kind": "join", "name": "j", "of": ["j"]}]}"#).unwrap();
    assert!(!compile(&bp, &CompileOptions::new()).unwrap_err().is_empty());
}
