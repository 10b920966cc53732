//! Where agents' models come from.
//!
//! A script describes a team: agents, their prompts and who delegates to
//! whom. A [`ModelSource`] decides what answers for each agent. Today there
//! is one source, [`ModelSource::Script`]: each agent gets a
//! [`ScriptedModel`] that replays the responses written in the script
//! (`--provider scripted`, the default). [`ModelSource::Provider`] gives
//! every agent one real model instead (`--provider openai|anthropic`, built
//! by [`ProviderArgs::build`]): the script still describes the team (agents,
//! prompts, sub-agents, limits) but its responses are ignored.

use std::sync::Arc;
use std::time::Duration;

use tinyagents_core::SharedModel;
use tinyagents_providers::{Anthropic, OpenAiCompatible, ScriptedModel};

use crate::script::AgentSpec;

/// What answers for each agent (see the module docs).
#[derive(Clone)]
pub enum ModelSource {
    /// Every agent replays the responses of its script entry.
    Script(ScriptOptions),
    /// Every agent calls this model (a hosted or local server).
    Provider(SharedModel),
}

impl std::fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Script(opts) => f.debug_tuple("Script").field(opts).finish(),
            Self::Provider(model) => f.debug_tuple("Provider").field(&model.id()).finish(),
        }
    }
}

/// How scripted models behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptOptions {
    /// Honor each agent's `delay_ms` (off for tests: `--no-delay`).
    pub delays: bool,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        Self { delays: true }
    }
}

impl ModelSource {
    /// The model for the agent described by `spec`.
    ///
    /// Each call builds a new model: an agent gets exactly one, shared by all
    /// its runs, so an agent invoked several times consumes its responses in
    /// order (or cycles through them when `cycle` is set).
    pub fn model_for(&self, spec: &AgentSpec) -> SharedModel {
        match self {
            Self::Provider(model) => model.clone(),
            Self::Script(opts) => {
                let results: Vec<ScriptResult> = spec.responses.iter().map(|r| r.to_result()).collect();
                let model = if !spec.cycle {
                    ScriptedModel::with_results(results)
                } else if results.iter().all(Result::is_ok) {
                    ScriptedModel::cycle(results.into_iter().flatten())
                } else {
                    ScriptedModel::from_fn(cycling(results))
                };
                let mut model = model.with_id(spec.model.clone()).without_recording();
                if opts.delays && spec.delay_ms > 0 {
                    model = model.with_delay(Duration::from_millis(spec.delay_ms));
                }
                Arc::new(model)
            }
        }
    }
}

/// Which model answers (`--provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProviderKind {
    /// Scripted replies from the script or `--responses` (no network).
    #[default]
    Scripted,
    /// The embedded GGUF model, in process (no key, no network; the
    /// default model is pulled into the user cache on first use).
    Local,
    /// An OpenAI-compatible Chat Completions server (OpenAI, Ollama, vLLM,
    /// llama.cpp's server, LM Studio, OpenRouter, Groq, DeepSeek, ...).
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// The provider options of `tinyagents run`, checked together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderArgs {
    /// `--provider` (`None`: not given, i.e. scripted).
    pub provider: Option<ProviderKind>,
    /// `--base-url`.
    pub base_url: Option<String>,
    /// `--model`.
    pub model: Option<String>,
    /// `--api-key-env`.
    pub api_key_env: Option<String>,
    /// `--threads` (local model).
    pub threads: Option<u32>,
    /// `--max-tokens` (local model).
    pub max_tokens: Option<u32>,
}

/// A bad combination of provider options (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderArgsError {
    /// An option that only makes sense with a real provider.
    #[error("{option} needs --provider local, openai or anthropic")]
    NeedsProvider {
        /// The option given.
        option: &'static str,
    },
    /// A required option is missing.
    #[error("--provider {provider} needs {option}")]
    Missing {
        /// The provider.
        provider: &'static str,
        /// The missing option.
        option: &'static str,
    },
    /// The provider could not be configured (e.g. a bad URL).
    #[error("--provider {provider}: {message}")]
    Config {
        /// The provider.
        provider: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl ProviderArgs {
    /// The model every agent uses, or `None` for scripted models.
    ///
    /// `--base-url` defaults to the provider's own API (OpenAI's or
    /// Anthropic's). The API key is read from the environment variable `--api-key-env`
    /// (default `OPENAI_API_KEY` or `ANTHROPIC_API_KEY`); a missing or
    /// empty variable means no key, which local servers accept.
    ///
    /// ```
    /// use tinyagents_cli::source::{ProviderArgs, ProviderKind};
    ///
    /// let args = ProviderArgs { base_url: Some("http://127.0.0.1:8080/v1".into()), ..Default::default() };
    /// assert!(args.build().is_err()); // --base-url without --provider
    /// let args = ProviderArgs {
    ///     provider: Some(ProviderKind::Openai),
    ///     base_url: Some("http://127.0.0.1:8080/v1".into()),
    ///     model: Some("m".into()),
    ///     ..Default::default()
    /// };
    /// assert_eq!(args.build().unwrap().unwrap().id(), "m");
    /// ```
    pub fn build(&self) -> Result<Option<SharedModel>, ProviderArgsError> {
        let kind = self.provider.unwrap_or_default();
        if kind == ProviderKind::Scripted {
            let given = [
                ("--base-url", self.base_url.is_some()),
                ("--model", self.model.is_some()),
                ("--api-key-env", self.api_key_env.is_some()),
            ];
            if let Some((option, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ProviderArgsError::NeedsProvider { option });
            }
            return Ok(None);
        }
        if kind == ProviderKind::Local {
            if let Some((option, _)) = [
                ("--base-url", self.base_url.is_some()),
                ("--api-key-env", self.api_key_env.is_some()),
            ]
            .iter()
            .find(|(_, set)| *set)
            {
                return Err(ProviderArgsError::Config {
                    provider: "local",
                    message: format!("{option} does not apply to the embedded model"),
                });
            }
            let opts = crate::local::LocalOptions {
                threads: self.threads.unwrap_or(1).max(1),
                max_tokens: self.max_tokens.unwrap_or(crate::local::DEFAULT_MAX_TOKENS).max(1),
            };
            return crate::local::load(self.model.as_deref(), opts)
                .map(Some)
                .map_err(|message| ProviderArgsError::Config {
                    provider: "local",
                    message,
                });
        }
        let (provider, default_env) = match kind {
            ProviderKind::Anthropic => ("anthropic", "ANTHROPIC_API_KEY"),
            _ => ("openai", "OPENAI_API_KEY"),
        };
        let model = self.model.clone().ok_or(ProviderArgsError::Missing {
            provider,
            option: "--model",
        })?;
        let env = self.api_key_env.as_deref().unwrap_or(default_env);
        let key = std::env::var(env).ok().filter(|k| !k.trim().is_empty());
        let config = |e: tinyagents_providers::ConfigError| ProviderArgsError::Config {
            provider,
            message: e.to_string(),
        };
        let model: SharedModel = match kind {
            ProviderKind::Anthropic => {
                let base = self.base_url.as_deref().unwrap_or(Anthropic::BASE_URL);
                Arc::new(Anthropic::new(base, key, model).map_err(config)?)
            }
            _ => {
                let base = self
                    .base_url
                    .as_deref()
                    .unwrap_or(tinyagents_providers::OpenAiConfig::OPENAI_BASE_URL);
                Arc::new(OpenAiCompatible::new(base, key, model).map_err(config)?)
            }
        };
        Ok(Some(model))
    }
}

type ScriptResult = Result<tinyagents_core::ModelResponse, tinyagents_core::ModelError>;

/// Cycles through `results`, errors included (`ScriptedModel::cycle` takes
/// replies only). Call ids are filled in by the scripted model.
fn cycling(results: Vec<ScriptResult>) -> impl Fn(&tinyagents_core::ModelRequest) -> ScriptResult + Send + Sync {
    let next = std::sync::atomic::AtomicUsize::new(0);
    move |_| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match results.get(n % results.len().max(1)) {
            Some(r) => r.clone(),
            None => Err(tinyagents_core::ModelError::Script {
                message: "scripted model has an empty cycle".into(),
            }),
        }
    }
}
