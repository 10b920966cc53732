//! Pass 5, estimate: what a plan will cost before it runs.
//!
//! An agent costs `turns × (input + output tokens per turn)`, priced with
//! the [`PriceTable`] by model id. A map multiplies its body by the expected
//! number of items (`expected_items`, else the list schema's `maxItems`,
//! else a default); a loop multiplies its body by `max_iterations` (an
//! upper bound); a subgraph costs its blueprint's total (recursive use is
//! expanded down to `max_depth`). The figures drive cost-aware spawning: a
//! `spawn_agents` call whose estimate exceeds the remaining budget is
//! refused before any model call.

use tinyagents_core::{Cost, PriceTable, Usage};

use crate::ir::EstimateHint;

/// Defaults for agents that give no estimate hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EstimateDefaults {
    /// Input tokens per turn.
    pub input_tokens: u64,
    /// Output tokens per turn.
    pub output_tokens: u64,
    /// Turns per run.
    pub turns: u32,
    /// Items per map.
    pub map_items: u32,
}

impl Default for EstimateDefaults {
    fn default() -> Self {
        Self {
            input_tokens: 1_000,
            output_tokens: 300,
            turns: 1,
            map_items: 4,
        }
    }
}

/// Estimated work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Agent runs.
    pub agents: u64,
    /// Model calls.
    pub model_calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost.
    pub cost: Cost,
}

impl Estimate {
    /// Input plus output tokens.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// This estimate `n` times.
    #[must_use]
    pub fn times(self, n: u64) -> Self {
        Self {
            agents: self.agents.saturating_mul(n),
            model_calls: self.model_calls.saturating_mul(n),
            input_tokens: self.input_tokens.saturating_mul(n),
            output_tokens: self.output_tokens.saturating_mul(n),
            cost: Cost(self.cost.0.saturating_mul(n)),
        }
    }
}

impl std::ops::Add for Estimate {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            agents: self.agents.saturating_add(o.agents),
            model_calls: self.model_calls.saturating_add(o.model_calls),
            input_tokens: self.input_tokens.saturating_add(o.input_tokens),
            output_tokens: self.output_tokens.saturating_add(o.output_tokens),
            cost: self.cost + o.cost,
        }
    }
}

impl std::ops::AddAssign for Estimate {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Estimate {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} agent run(s), {} model call(s), {} tokens, {}",
            self.agents,
            self.model_calls,
            self.total_tokens(),
            self.cost
        )
    }
}

/// One run of an agent on `model`.
pub fn agent(model: &str, hint: Option<&EstimateHint>, defaults: &EstimateDefaults, prices: &PriceTable) -> Estimate {
    let turns = u64::from(hint.and_then(|h| h.turns).unwrap_or(defaults.turns).max(1));
    let input = hint
        .and_then(|h| h.input_tokens)
        .unwrap_or(defaults.input_tokens)
        .saturating_mul(turns);
    let output = hint
        .and_then(|h| h.output_tokens)
        .unwrap_or(defaults.output_tokens)
        .saturating_mul(turns);
    let usage = Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        requests: turns,
    };
    Estimate {
        agents: 1,
        model_calls: turns,
        input_tokens: input,
        output_tokens: output,
        cost: prices.cost(model, &usage),
    }
}

/// Items a map is assumed to have: its hint, else the list schema's
/// `maxItems`, else the default.
pub fn map_items(
    hint: Option<u32>,
    schema: Option<&serde_json::Map<String, serde_json::Value>>,
    defaults: &EstimateDefaults,
) -> u32 {
    hint.or_else(|| {
        schema
            .and_then(|s| s.get("maxItems"))
            .and_then(serde_json::Value::as_u64)
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    })
    .unwrap_or(defaults.map_items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyagents_core::Price;

    #[test]
    fn agent_cost_is_tokens_times_turns_times_price() {
        let prices = PriceTable::new().with("m", Price::per_mtok(1.0, 2.0));
        let hint = EstimateHint {
            input_tokens: Some(1_000),
            output_tokens: Some(500),
            turns: Some(3),
        };
        let e = agent("m", Some(&hint), &EstimateDefaults::default(), &prices);
        assert_eq!((e.input_tokens, e.output_tokens, e.model_calls), (3_000, 1_500, 3));
        assert_eq!(e.cost, Cost::from_usd(3_000.0 / 1e6 + 3_000.0 / 1e6));
        assert_eq!(
            agent("unpriced", None, &EstimateDefaults::default(), &prices).cost,
            Cost::ZERO
        );
    }

    #[test]
    fn map_items_prefer_the_hint_then_max_items() {
        let d = EstimateDefaults::default();
        let schema = serde_json::json!({"type": "array", "maxItems": 7});
        let s = schema.as_object();
        assert_eq!(map_items(Some(2), s, &d), 2);
        assert_eq!(map_items(None, s, &d), 7);
        assert_eq!(map_items(None, None, &d), d.map_items);
    }

    #[test]
    fn estimates_add_and_multiply() {
        let e = Estimate {
            agents: 1,
            model_calls: 2,
            input_tokens: 10,
            output_tokens: 5,
            cost: Cost(7),
        };
        let t = e.times(3) + e;
        assert_eq!((t.agents, t.total_tokens(), t.cost), (4, 60, Cost(28)));
    }
}
