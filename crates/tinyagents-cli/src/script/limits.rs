//! Strict forms of core's serde types: limits, prices and usage as a script
//! writes them. Each rejects unknown fields so typos are errors.

use serde::Deserialize;
use tinyagents_core::{Price, RunLimits, Usage};

/// [`RunLimits`] with its own serde field names (`max_depth`,
/// `max_descendants`, `max_concurrent_children`, `max_tokens`, `max_cost` in
/// picodollars, `timeout` in milliseconds, `max_turns`), rejecting any other.
///
/// The accepted names are read from `RunLimits`' own serialization, so a
/// field added to core is accepted here without a change.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptLimits(pub RunLimits);

impl<'de> Deserialize<'de> for ScriptLimits {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let known = known_fields();
        if let Some(bad) = map.keys().find(|k| !known.contains(k)) {
            return Err(D::Error::custom(format!(
                "unknown limit `{bad}`, expected one of {}",
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            )));
        }
        RunLimits::deserialize(serde_json::Value::Object(map))
            .map(Self)
            .map_err(|e| D::Error::custom(format!("invalid limits: {e}")))
    }
}

fn known_fields() -> Vec<String> {
    match serde_json::to_value(RunLimits::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A model's price in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// Uncached input tokens.
    pub input_per_mtok: f64,
    /// Output tokens.
    pub output_per_mtok: f64,
    /// Cached input tokens (defaults to the input price).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

impl PriceSpec {
    /// Core's [`Price`].
    pub fn to_price(&self) -> Price {
        Price {
            input_per_mtok: self.input_per_mtok,
            output_per_mtok: self.output_per_mtok,
            cached_input_per_mtok: self.cached_input_per_mtok,
            ..Price::default()
        }
    }
}

/// Tokens one scripted call is charged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageSpec {
    /// Prompt tokens (cached ones included).
    #[serde(default)]
    pub input_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens served from cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
}

impl UsageSpec {
    /// Core's [`Usage`] of one call.
    pub fn to_usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            requests: 1,
            ..Usage::default()
        }
    }
}
