//! The decoding loop on llama.cpp, with llguidance constraining tokens.
//!
//! # The double-accept trap
//!
//! llama.cpp's `llama_sampler_sample` (what `LlamaSampler::sample` calls)
//! already *accepts* the token it picks into every sampler of the chain.
//! Calling `accept` again afterwards feeds the token twice: a grammar sampler
//! then sees text that was never generated and, in C, aborts the process.
//! This loop therefore never calls `accept` at all. Free text goes through
//! `sample` alone. Constrained text does not put the grammar in the sampler
//! chain: [`TokenPicker::pick`] masks the logits with the llguidance
//! [`Matcher`], lets the chain *select* (`apply`, which accepts nothing) and
//! then feeds the chosen token to the matcher exactly once, in one place.
//! `TokenPicker` counts what it fed so tests can check the invariant.
//!
//! # Hiding the grammar's cost
//!
//! The token mask for the next position depends only on the tokens the
//! matcher has consumed, not on the logits. So while llama.cpp runs the
//! forward pass for the token just picked, another thread computes the next
//! mask (when llama.cpp leaves a core free: `threads` below the machine's
//! parallelism). On 2 cores with 1 llama.cpp thread, constrained decoding
//! then costs about what unconstrained decoding does.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::SimpleVob;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use tinyagents_core::ModelError;

use super::LocalError;
use super::prompt::{ChatMessage, TOOL_CALL_OPEN};

/// llama.cpp's backend may be initialized once per process.
fn backend() -> Result<&'static LlamaBackend, LocalError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default().with_logs_enabled(false));
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LocalError::Backend(e.clone()))
}

/// A loaded model: weights, chat template and the grammar machinery.
pub(crate) struct Engine {
    model: LlamaModel,
    template: LlamaChatTemplate,
    factory: ParserFactory,
    pub(crate) path: PathBuf,
    pub(crate) n_ctx_train: u32,
}

/// Checks the file before llama.cpp sees it: it must exist and start with
/// the GGUF magic, so that a wrong path or a text file gives a clear error.
fn check_file(path: &Path) -> Result<(), LocalError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| LocalError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut magic = [0u8; 4];
    if f.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
        return Err(LocalError::NotGguf(path.to_path_buf()));
    }
    Ok(())
}

impl Engine {
    pub(crate) fn load(path: &Path) -> Result<Self, LocalError> {
        check_file(path)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|_| LocalError::Load(path.to_path_buf()))?;
        let template = match model.chat_template(None) {
            Ok(t) => t,
            Err(_) => LlamaChatTemplate::new("chatml").map_err(|e| LocalError::Backend(e.to_string()))?,
        };
        let tok_env = LlamaSampler::llguidance_tok_env(&model);
        let mut factory = ParserFactory::new_simple(&tok_env).map_err(|e| LocalError::Backend(e.to_string()))?;
        factory.set_stderr_log_level(0);
        let n_ctx_train = model.n_ctx_train();
        Ok(Self {
            model,
            template,
            factory,
            path: path.to_path_buf(),
            n_ctx_train,
        })
    }

    /// Applies the model's chat template (llama.cpp's) and opens the
    /// assistant turn.
    pub(crate) fn render(&self, messages: &[ChatMessage]) -> Result<String, ModelError> {
        let chat = messages
            .iter()
            .map(|(role, content)| LlamaChatMessage::new((*role).to_string(), content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Other {
                message: format!("message cannot be passed to llama.cpp: {e}"),
            })?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| ModelError::Other {
                message: format!("chat template failed: {e}"),
            })
    }

    /// Token count of `text` as a prompt.
    pub(crate) fn count_tokens(&self, text: &str) -> usize {
        self.model.vocab().tokenize(text.as_bytes(), true, true).len()
    }

    /// A matcher for a JSON schema (already carrying its `x-guidance` options).
    pub(crate) fn json_matcher(&self, schema: &Value) -> Result<Matcher, ModelError> {
        let parser = self
            .factory
            .create_parser(TopLevelGrammar::from_json_schema(schema.clone()));
        let m = Matcher::new(parser);
        match m.get_error() {
            Some(e) => Err(ModelError::Other {
                message: format!("the JSON schema cannot be used as a grammar: {e}"),
            }),
            None => Ok(m),
        }
    }
}

/// How to generate.
#[derive(Clone, Debug)]
pub(crate) struct GenOptions {
    pub max_tokens: u32,
    pub n_ctx: u32,
    pub threads: i32,
    pub temperature: f32,
    pub seed: u32,
    pub repeat_penalty: f32,
}

/// What the loop reports as it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(String),
    Call(String),
}

/// When the loop switches to the tool-call grammar by itself.
pub(crate) enum Constraint {
    /// Free text; with `Some(schema)`, a `<tool_call>` the model opens is
    /// completed under that call schema.
    Free(Option<Value>),
    /// All output is JSON under this matcher.
    Json(Matcher),
    /// The prompt ends with `<tool_call>`; all output is the call's JSON.
    Call(Matcher),
}

/// What one generation produced, with counts and timings.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    /// Free text (before any tool call).
    pub text: String,
    /// The JSON of a tool call, when one was made.
    pub call: Option<String>,
    /// Prompt tokens evaluated.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Tokens fed to the grammar (each exactly once).
    pub grammar_tokens: u32,
    /// Time to evaluate the prompt.
    pub prompt_time: Duration,
    /// Time to generate.
    pub gen_time: Duration,
    /// True when the JSON grammar completed.
    pub grammar_complete: bool,
}

/// Picks the next token (see the module docs for why this is the only
/// place a token is accepted).
struct TokenPicker {
    sampler: LlamaSampler,
    fed: u32,
    /// Greedy decoding: a constrained token is the best allowed logit,
    /// found in place (no candidate array, no sampler chain).
    greedy: bool,
}

impl TokenPicker {
    /// A picker; `repeat_penalty` > 1 penalizes tokens of the last 64
    /// (free text only: constrained tokens are never accepted into the
    /// chain, so its history stays empty there).
    fn new(n_vocab: i32, temperature: f32, seed: u32, repeat_penalty: f32) -> Self {
        let mut chain = Vec::new();
        if repeat_penalty > 1.0 {
            chain.push(LlamaSampler::penalties(n_vocab, 64, repeat_penalty, 0.0, 0.0));
        }
        if temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.extend([
                LlamaSampler::top_k(40),
                LlamaSampler::top_p(0.95, 1),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(seed),
            ]);
        }
        let sampler = LlamaSampler::chain_simple(chain);
        Self {
            sampler,
            fed: 0,
            greedy: temperature <= 0.0,
        }
    }

    /// Picks the next token; `mask` is the matcher's mask for this
    /// position when it was computed ahead (see the module docs).
    fn pick(
        &mut self,
        ctx: &LlamaContext<'_>,
        idx: i32,
        matcher: Option<&mut Matcher>,
        mask: Option<SimpleVob>,
        is_eog: impl Fn(LlamaToken) -> bool,
    ) -> Result<LlamaToken, ModelError> {
        let Some(m) = matcher else {
            // `sample` selects and accepts: nothing else may accept it again.
            return Ok(self.sampler.sample(ctx, idx));
        };
        let grammar_err = |e: &dyn std::fmt::Display| ModelError::Other {
            message: format!("grammar: {e}"),
        };
        let mask = match mask {
            Some(mask) => mask,
            None => m.compute_mask_or_eos().map_err(|e| grammar_err(&e))?,
        };
        let token = if self.greedy {
            // The best allowed logit, scanned in place: the mask is looked
            // up only for logits that beat the best so far.
            let mut best: Option<(u32, f32)> = None;
            for (id, &logit) in (0u32..).zip(ctx.get_logits_ith(idx)) {
                if best.is_none_or(|(_, b)| logit > b) && mask.is_allowed(id) {
                    best = Some((id, logit));
                }
            }
            let (id, _) = best.ok_or_else(|| ModelError::Other {
                message: "grammar: no token is allowed".into(),
            })?;
            LlamaToken(i32::try_from(id).map_err(|e| grammar_err(&e))?)
        } else {
            let mut candidates = ctx.token_data_array_ith(idx);
            for d in candidates.data.iter_mut() {
                if !u32::try_from(d.id().0).is_ok_and(|id| mask.is_allowed(id)) {
                    d.set_logit(f32::NEG_INFINITY);
                }
            }
            // `apply` selects without accepting.
            candidates.apply_sampler(&mut self.sampler);
            candidates.selected_token().ok_or_else(|| ModelError::Other {
                message: "the sampler selected no token".into(),
            })?
        };
        if !is_eog(token) {
            let id = u32::try_from(token.0).map_err(|e| grammar_err(&e))?;
            m.consume_token(id).map_err(|e| grammar_err(&e))?;
            self.fed += 1;
        }
        Ok(token)
    }
}

/// Collects bytes into whole UTF-8 characters.
#[derive(Default)]
struct Utf8Buf(Vec<u8>);

impl Utf8Buf {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.0.extend_from_slice(bytes);
        match std::str::from_utf8(&self.0) {
            Ok(s) => {
                let out = s.to_string();
                self.0.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(self.0.get(..valid).unwrap_or_default()).into_owned();
                self.0.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.0).into_owned();
                self.0.clear();
                out
            }
        }
    }
}

fn decode_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Other {
        message: format!("llama.cpp decode failed: {e}"),
    }
}

impl Engine {
    /// Generates a reply to `prompt` (already rendered).
    pub(crate) fn generate(
        &self,
        prompt: &str,
        mut constraint: Constraint,
        opts: &GenOptions,
        cancel: &AtomicBool,
        emit: &mut dyn FnMut(Piece),
    ) -> Result<Generation, ModelError> {
        let backend = backend().map_err(|e| ModelError::Other { message: e.to_string() })?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let n_ctx = opts.n_ctx.min(self.n_ctx_train).max(16);
        if tokens.len() >= n_ctx as usize {
            return Err(ModelError::ContextLength {
                message: format!(
                    "the prompt has {} tokens; the context window of {} holds {n_ctx}",
                    tokens.len(),
                    self.path.display()
                ),
            });
        }
        let n_batch: usize = 512;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch as u32)
            .with_n_threads(opts.threads)
            .with_n_threads_batch(opts.threads);
        let mut ctx = self.model.new_context(backend, params).map_err(|e| ModelError::Other {
            message: format!("cannot create a llama.cpp context: {e}"),
        })?;

        let mut out = Generation {
            prompt_tokens: tokens.len() as u32,
            ..Generation::default()
        };
        let started = Instant::now();
        let mut batch = LlamaBatch::new(n_batch, 1);
        let last = tokens.len().saturating_sub(1);
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            batch.clear();
            for (j, t) in chunk.iter().enumerate() {
                let pos = c * n_batch + j;
                batch.add(*t, pos as i32, &[0], pos == last).map_err(decode_err)?;
            }
            ctx.decode(&mut batch).map_err(decode_err)?;
        }
        out.prompt_time = started.elapsed();

        let started = Instant::now();
        let mut picker = TokenPicker::new(self.model.n_vocab(), opts.temperature, opts.seed, opts.repeat_penalty);
        let mut utf8 = Utf8Buf::default();
        let mut idx = batch.n_tokens() - 1;
        let mut pos = tokens.len() as i32;
        let budget = opts.max_tokens.min(n_ctx - tokens.len() as u32);
        let mut call_text: Option<String> = matches!(constraint, Constraint::Call(_)).then(String::new);
        let is_eog = |t: LlamaToken| vocab.is_eog(t);
        let overlap = std::thread::available_parallelism()
            .map(|n| n.get() > usize::try_from(opts.threads.max(1)).unwrap_or(usize::MAX))
            .unwrap_or(false);
        let mut next_mask: Option<SimpleVob> = None;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(ModelError::Cancelled);
            }
            if out.generated_tokens >= budget {
                if matches!(constraint, Constraint::Json(_) | Constraint::Call(_)) {
                    return Err(ModelError::OutputCapReached {
                        cap: budget,
                        usage: Box::new(tinyagents_core::Usage::call(
                            u64::from(out.prompt_tokens),
                            u64::from(out.generated_tokens),
                        )),
                    });
                }
                break;
            }
            let matcher = match &mut constraint {
                Constraint::Json(m) | Constraint::Call(m) => Some(m),
                Constraint::Free(_) => None,
            };
            let token = picker.pick(&ctx, idx, matcher, next_mask.take(), is_eog)?;
            if is_eog(token) {
                break;
            }
            out.generated_tokens += 1;
            let piece = utf8.push(&vocab.token_to_piece(token, false, None));
            let stopped = match &constraint {
                Constraint::Json(m) | Constraint::Call(m) => m.is_stopped(),
                Constraint::Free(_) => false,
            };
            match (&mut constraint, &mut call_text) {
                (Constraint::Call(_), Some(call)) => {
                    call.push_str(&piece);
                    emit(Piece::Call(piece));
                }
                _ => {
                    out.text.push_str(&piece);
                    emit(Piece::Text(piece));
                }
            }
            if stopped {
                out.grammar_complete = true;
                break;
            }
            // A tool call the model opened by itself is completed under the
            // call grammar.
            if let Constraint::Free(Some(schema)) = &constraint
                && let Some(at) = out.text.find(TOOL_CALL_OPEN)
            {
                let m = self.json_matcher(schema)?;
                out.text.truncate(at);
                constraint = Constraint::Call(m);
                call_text = Some(String::new());
            }
            batch.clear();
            batch.add(token, pos, &[0], true).map_err(decode_err)?;
            let ahead = match &mut constraint {
                Constraint::Json(m) | Constraint::Call(m) if overlap && !m.is_stopped() => Some(m),
                _ => None,
            };
            match ahead {
                Some(m) => {
                    // The forward pass here, the next mask on another core.
                    let (decoded, mask) = std::thread::scope(|scope| {
                        let masker = scope.spawn(move || m.compute_mask_or_eos());
                        let decoded = ctx.decode(&mut batch);
                        (decoded, masker.join())
                    });
                    decoded.map_err(decode_err)?;
                    next_mask = Some(
                        mask.map_err(|_| ModelError::Other {
                            message: "grammar: the mask thread panicked".into(),
                        })?
                        .map_err(|e| ModelError::Other {
                            message: format!("grammar: {e}"),
                        })?,
                    );
                }
                None => ctx.decode(&mut batch).map_err(decode_err)?,
            }
            pos += 1;
            idx = 0;
        }
        if matches!(constraint, Constraint::Json(_) | Constraint::Call(_)) && !out.grammar_complete {
            // EOS was allowed only where the grammar accepts.
            out.grammar_complete = true;
        }
        out.call = call_text;
        out.grammar_tokens = picker.fed;
        out.gen_time = started.elapsed();
        Ok(out)
    }
}
