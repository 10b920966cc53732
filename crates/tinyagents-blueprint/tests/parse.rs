//! The two surface forms: JSON and `.ta` text, one IR, lossless round trips,
//! diagnostics that point at the source.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{EXAMPLES, examples_dir};
use tinyagents_blueprint::{
    Blueprint, CompileOptions, SourceKind, blueprint_json_schema, compile_loaded, format_blueprint, format_source,
    parse_json, parse_text, to_json,
};

fn read(name: &str, ext: &str) -> String {
    std::fs::read_to_string(examples_dir().join(format!("{name}.{ext}"))).unwrap()
}

/// Regenerates the `.json` examples from the `.ta` ones (`TA_BLESS=1`).
#[test]
fn bless_examples_when_asked() {
    if std::env::var_os("TA_BLESS").is_none() {
        return;
    }
    for name in EXAMPLES {
        let bp = parse_text(name, &read(name, "ta")).unwrap().blueprint;
        std::fs::write(examples_dir().join(format!("{name}.json")), to_json(&bp) + "\n").unwrap();
    }
}

#[test]
fn every_example_is_the_same_blueprint_in_both_forms() {
    for name in EXAMPLES {
        let from_text = parse_text(name, &read(name, "ta")).unwrap().blueprint;
        let from_json = parse_json(name, &read(name, "json")).unwrap().blueprint;
        assert_eq!(from_text, from_json, "{name}: .ta and .json differ");
    }
}

#[test]
fn json_to_text_to_json_is_the_identity_on_every_example() {
    for name in EXAMPLES {
        let json = read(name, "json");
        let bp = parse_json(name, &json).unwrap().blueprint;
        let text = format_blueprint(&bp);
        let back = parse_text(name, &text)
            .unwrap_or_else(|r| panic!("{name}: {}\n{text}", r.render()))
            .blueprint;
        assert_eq!(back, bp, "{name}");
        let a: serde_json::Value = serde_json::from_str(&json).unwrap();
        let b: serde_json::Value = serde_json::from_str(&to_json(&back)).unwrap();
        assert_eq!(a, b, "{name}: JSON values differ");
    }
}

#[test]
fn the_formatter_is_canonical_and_idempotent() {
    for name in EXAMPLES {
        let once = format_source(name, &read(name, "ta"), SourceKind::Text).unwrap();
        let twice = format_source(name, &once, SourceKind::Text).unwrap();
        assert_eq!(once, twice, "{name}");
        let json = format_source(name, &read(name, "json"), SourceKind::Json).unwrap();
        assert_eq!(json, read(name, "json"), "{name}: the checked-in JSON is canonical");
    }
}

#[test]
fn awkward_values_survive_the_round_trip() {
    let json = serde_json::json!({
        "name": "odd name",
        "inputs": [{"name": "xs", "type": "list", "description": "line 1\nline 2 ends with a quote\""}],
        "recursion": {"max_depth": 2},
        "nodes": [
            {"kind": "agent", "name": "a", "task": "tabs\tand \"quotes\" and \"\"\" triple\n",
             "role": "multi\nline role\n", "output": {"type": "object", "properties": {"x": {"const": -1.5e-3}}},
             "budget": {"cost_usd": 0.000123, "tokens": 18446744073709551615u64, "timeout_ms": 0},
             "estimate": {"turns": 0}},
            {"kind": "router", "name": "r", "on": "a.x", "routes": [
                {"when": {"equals": {"nested": [1, null, true]}}, "to": "j"},
                {"when": {"contains": ""}, "to": "j"},
                {"when": "present", "to": "j"}]},
            {"kind": "join", "name": "j", "of": ["a"], "rationale": "why"},
            {"kind": "subgraph", "name": "s", "uses": "with space", "with": {"in put": "{{deps.a}}"}},
            {"kind": "reduce", "name": "red", "from": "inputs.xs"},
            {"kind": "map", "name": "m", "over": "inputs.xs", "each": {"kind": "map", "name": "inner", "over": "x",
              "each": {"kind": "join", "name": "deep", "of": []}}}
        ],
        "blueprints": [{"name": "with space"}]
    });
    let bp: Blueprint = serde_json::from_value(json.clone()).unwrap();
    let text = format_blueprint(&bp);
    let back = parse_text("t", &text)
        .unwrap_or_else(|r| panic!("{}\n{text}", r.render()))
        .blueprint;
    assert_eq!(back, bp);
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
}

#[test]
fn a_text_syntax_error_points_at_its_span_with_a_hint() {
    let src = "blueprint t {\n  agent a {\n    task \"x\"\n    toolz [web]\n  }\n}\n";
    let report = parse_text("t.ta", src).unwrap_err();
    let d = &report.diagnostics[0];
    assert_eq!(&src[d.span.clone().unwrap()], "toolz");
    assert!(d.hint.as_deref().unwrap().contains("tools"));
    let rendered = report.render();
    assert!(
        rendered.contains("t.ta") && rendered.contains("toolz [web]"),
        "{rendered}"
    );
}

#[test]
fn a_semantic_error_in_text_points_at_the_offending_token() {
    let src = "blueprint t {\n  model \"m\"\n  agent a {\n    task \"{{deps.nope}}\"\n    tools [web, shell]\n  }\n}\n";
    let loaded = parse_text("t.ta", src).unwrap();
    let opts = CompileOptions::new().grant(tinyagents_blueprint::CapabilityGrant::tools(["web"]));
    let report = compile_loaded(&loaded, &opts).unwrap_err();
    let spans: Vec<&str> = report
        .diagnostics
        .iter()
        .map(|d| &src[d.span.clone().unwrap()])
        .collect();
    assert_eq!(spans, vec!["\"{{deps.nope}}\"", "shell"]);
    let rendered = report.render();
    assert!(
        rendered.contains("blueprint::capability") && rendered.contains("blueprint::unknown-name"),
        "{rendered}"
    );
}

#[test]
fn a_semantic_error_in_json_points_at_its_path_and_span() {
    let src =
        r#"{"name": "t", "model": "m", "nodes": [{"kind": "agent", "name": "a", "task": "x", "tools": ["shell"]}]}"#;
    let loaded = parse_json("t.json", src).unwrap();
    let opts = CompileOptions::new().grant(tinyagents_blueprint::CapabilityGrant::none());
    let report = compile_loaded(&loaded, &opts).unwrap_err();
    let d = &report.diagnostics[0];
    assert_eq!(d.path.to_string(), "$.nodes[0].tools[0]");
    assert_eq!(&src[d.span.clone().unwrap()], "\"shell\"");
    assert!(report.render().contains("$.nodes[0].tools[0]"));
}

#[test]
fn a_json_shape_error_names_the_json_path() {
    let src = r#"{"name": "t", "nodes": [{"kind": "agent", "name": "a", "task": "x", "budget": {"tokens": "many"}}]}"#;
    let report = parse_json("t.json", src).unwrap_err();
    assert_eq!(report.diagnostics[0].path.to_string(), "$.nodes[0].budget.tokens");
    let nested = r#"{"name": "t", "nodes": [{"kind": "map", "name": "m", "over": "x",
        "each": {"kind": "agent", "name": "w", "task": "x", "tools": "web"}}]}"#;
    let report = parse_json("t.json", nested).unwrap_err();
    assert_eq!(report.diagnostics[0].path.to_string(), "$.nodes[0].each.tools");
    let unknown = parse_json("t.json", r#"{"name": "t", "nodez": []}"#).unwrap_err();
    assert!(unknown.diagnostics[0].message.contains("nodez"));
    let syntax = parse_json("t.json", "{\"name\": ").unwrap_err();
    assert!(syntax.diagnostics[0].span.is_some());
}

#[test]
fn the_published_schema_describes_every_node_kind() {
    let schema = blueprint_json_schema();
    let text = schema.to_string();
    for kind in ["agent", "map", "reduce", "router", "join", "subgraph"] {
        assert!(text.contains(&format!("\"{kind}\"")), "schema lacks {kind}");
    }
    assert_eq!(schema["type"], "object");
    assert!(schema["required"].as_array().unwrap().contains(&"name".into()));
}
