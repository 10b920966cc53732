//! Token usage, cost and the price table.
//!
//! Cost is an integer number of picodollars (10⁻¹² USD), so roll-ups over a
//! million model calls are exact sums, never floating-point drift. A `u64` of
//! picodollars holds up to about 18 million dollars per tree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tokens consumed by one or more model calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// Prompt tokens (including cached ones).
    #[serde(default)]
    pub input_tokens: u64,
    /// Generated tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to the provider's cache (Anthropic prompt
    /// caching bills them above the input price).
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    /// Number of model calls.
    #[serde(default)]
    pub requests: u64,
}

impl Usage {
    /// Usage of one call.
    pub const fn call(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
            requests: 1,
        }
    }

    /// Field-wise `self - earlier`, floored at zero: the usage that happened
    /// between two readings of the same counters.
    #[must_use]
    pub const fn saturating_sub(&self, earlier: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_sub(earlier.cached_input_tokens),
            cache_write_input_tokens: self
                .cache_write_input_tokens
                .saturating_sub(earlier.cache_write_input_tokens),
            requests: self.requests.saturating_sub(earlier.requests),
        }
    }

    /// Input plus output tokens.
    pub const fn total_tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

impl std::ops::Add for Usage {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            input_tokens: self.input_tokens.saturating_add(o.input_tokens),
            output_tokens: self.output_tokens.saturating_add(o.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_add(o.cached_input_tokens),
            cache_write_input_tokens: self.cache_write_input_tokens.saturating_add(o.cache_write_input_tokens),
            requests: self.requests.saturating_add(o.requests),
        }
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}

/// An amount of money in picodollars.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Cost(pub u64);

impl Cost {
    /// Zero.
    pub const ZERO: Self = Self(0);
    const PICO_PER_USD: f64 = 1e12;

    /// From US dollars (rounded to the nearest picodollar).
    pub fn from_usd(usd: f64) -> Self {
        if usd.is_finite() && usd > 0.0 {
            Self((usd * Self::PICO_PER_USD).round() as u64)
        } else {
            Self(0)
        }
    }

    /// In US dollars.
    pub fn usd(self) -> f64 {
        self.0 as f64 / Self::PICO_PER_USD
    }

    /// Picodollars.
    pub const fn picodollars(self) -> u64 {
        self.0
    }
}

impl std::ops::Add for Cost {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self(self.0.saturating_add(o.0))
    }
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Self) {
        self.0 = self.0.saturating_add(o.0);
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, |a, b| a + b)
    }
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let usd = self.usd();
        if usd != 0.0 && usd < 0.01 {
            write!(f, "${usd:.6}")
        } else {
            write!(f, "${usd:.4}")
        }
    }
}

/// Price of one model, per million tokens, in US dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Price {
    /// USD per million uncached input tokens.
    pub input_per_mtok: f64,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// USD per million cached input tokens (defaults to the input price).
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million input tokens written to the cache (defaults to the
    /// input price).
    #[serde(default)]
    pub cache_write_per_mtok: Option<f64>,
}

impl Price {
    /// A price with no cache discount.
    pub const fn per_mtok(input: f64, output: f64) -> Self {
        Self {
            input_per_mtok: input,
            output_per_mtok: output,
            cached_input_per_mtok: None,
            cache_write_per_mtok: None,
        }
    }

    /// Cost of `usage` at this price.
    pub fn cost(&self, usage: &Usage) -> Cost {
        // $/Mtok × 10⁶ = picodollars per token.
        let pico = |per_mtok: f64, tokens: u64| -> u64 {
            let per_token = (per_mtok * 1e6).round();
            if per_token.is_finite() && per_token > 0.0 {
                (per_token as u64).saturating_mul(tokens)
            } else {
                0
            }
        };
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage.cache_write_input_tokens.min(usage.input_tokens - cached);
        let uncached = usage.input_tokens - cached - written;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        let write_price = self.cache_write_per_mtok.unwrap_or(self.input_per_mtok);
        Cost(
            pico(self.input_per_mtok, uncached)
                .saturating_add(pico(cached_price, cached))
                .saturating_add(pico(write_price, written))
                .saturating_add(pico(self.output_per_mtok, usage.output_tokens)),
        )
    }
}

/// Prices by model id. A model without an entry costs nothing.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct PriceTable(HashMap<String, Price>);

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the price of `model`.
    #[must_use]
    pub fn with(mut self, model: impl Into<String>, price: Price) -> Self {
        self.0.insert(model.into(), price);
        self
    }

    /// Sets the price of `model`.
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.0.insert(model.into(), price);
    }

    /// The price of `model`, if known.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.0.get(model)
    }

    /// Cost of `usage` on `model` (zero when the model has no price).
    pub fn cost(&self, model: &str, usage: &Usage) -> Cost {
        self.get(model).map_or(Cost::ZERO, |p| p.cost(usage))
    }
}

/// Lock-free usage and cost accumulators, one set per run.
#[derive(Debug, Default)]
pub struct UsageCounters {
    input: AtomicU64,
    output: AtomicU64,
    cached: AtomicU64,
    cache_write: AtomicU64,
    requests: AtomicU64,
    cost: AtomicU64,
}

impl UsageCounters {
    /// Adds usage and cost.
    pub fn add(&self, usage: &Usage, cost: Cost) {
        self.input.fetch_add(usage.input_tokens, Ordering::Relaxed);
        self.output.fetch_add(usage.output_tokens, Ordering::Relaxed);
        self.cached.fetch_add(usage.cached_input_tokens, Ordering::Relaxed);
        self.cache_write
            .fetch_add(usage.cache_write_input_tokens, Ordering::Relaxed);
        self.requests.fetch_add(usage.requests, Ordering::Relaxed);
        self.cost.fetch_add(cost.0, Ordering::Relaxed);
    }

    /// Current usage.
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input.load(Ordering::Relaxed),
            output_tokens: self.output.load(Ordering::Relaxed),
            cached_input_tokens: self.cached.load(Ordering::Relaxed),
            cache_write_input_tokens: self.cache_write.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }

    /// Current cost.
    pub fn cost(&self) -> Cost {
        Cost(self.cost.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_cost_is_exact_in_picodollars() {
        let p = Price::per_mtok(0.15, 0.60);
        let c = p.cost(&Usage::call(1_000_000, 1_000_000));
        assert_eq!(c, Cost::from_usd(0.75));
        assert_eq!(p.cost(&Usage::call(1, 0)), Cost(150_000));
    }

    #[test]
    fn cached_tokens_use_the_cached_price() {
        let p = Price {
            input_per_mtok: 1.0,
            output_per_mtok: 0.0,
            cached_input_per_mtok: Some(0.1),
            cache_write_per_mtok: None,
        };
        let u = Usage {
            input_tokens: 100,
            cached_input_tokens: 40,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), Cost(60 * 1_000_000 + 40 * 100_000));
    }

    #[test]
    fn cache_writes_use_the_cache_write_price() {
        let p = Price {
            input_per_mtok: 1.0,
            output_per_mtok: 0.0,
            cached_input_per_mtok: Some(0.1),
            cache_write_per_mtok: Some(1.25),
        };
        let u = Usage {
            input_tokens: 100,
            cached_input_tokens: 40,
            cache_write_input_tokens: 50,
            ..Usage::default()
        };
        assert_eq!(p.cost(&u), Cost(10 * 1_000_000 + 40 * 100_000 + 50 * 1_250_000));
    }

    #[test]
    fn unknown_model_costs_nothing() {
        assert_eq!(PriceTable::new().cost("nope", &Usage::call(10, 10)), Cost::ZERO);
    }
}
