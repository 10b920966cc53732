//! Exponential backoff with jitter, bounded by the call's deadline.

use std::time::Duration;

use tinyagents_core::ModelError;
use tokio::time::Instant;

use super::error::{error_from_status, from_reqwest};

/// How failed requests are retried (see the [module docs](super)).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Cap on one wait computed by backoff (a server's `Retry-After` may ask
    /// for more and is honoured while the deadline allows).
    pub max_backoff: Duration,
    /// Randomize each wait to between half and all of its value, so clients
    /// that failed together do not retry together.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// `max_retries` retries with the default waits.
    pub fn retries(max_retries: u32) -> Self {
        Self {
            max_retries,
            ..Self::default()
        }
    }

    /// Sets the first wait (and keeps the cap at least as large).
    #[must_use]
    pub fn with_initial_backoff(mut self, d: Duration) -> Self {
        self.initial_backoff = d;
        self.max_backoff = self.max_backoff.max(d);
        self
    }

    /// The wait before retry number `retry` (from 0), before the deadline check.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let full = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        if self.jitter {
            let half = full / 2;
            half + full.saturating_sub(half).mul_f64(fastrand::f64())
        } else {
            full
        }
    }

    /// The wait before retrying after `error`, or `None` when it should not
    /// be retried (not retryable, retries used up, or past the deadline).
    pub(crate) fn wait_for(&self, error: &ModelError, retry: u32, deadline: Instant) -> Option<Duration> {
        if !error.is_retryable() || retry >= self.max_retries {
            return None;
        }
        let wait = match error {
            ModelError::RateLimited {
                retry_after_ms: Some(ms),
            } => Duration::from_millis(*ms),
            _ => self.backoff(retry),
        };
        (Instant::now() + wait < deadline).then_some(wait)
    }
}

/// Sends the request built by `build` until it succeeds, a non-retryable
/// error occurs, the retries are used up or the deadline would be passed.
/// Returns the successful response, headers read and body not yet consumed.
pub(crate) async fn send_with_retry(
    build: impl Fn() -> reqwest::RequestBuilder,
    policy: &RetryPolicy,
    deadline: Instant,
    model: &str,
) -> Result<reqwest::Response, ModelError> {
    let mut retry = 0u32;
    loop {
        let error = match tokio::time::timeout_at(deadline, build().send()).await {
            Err(_) => return Err(ModelError::Timeout),
            Ok(Err(e)) => from_reqwest(&e),
            Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let url = resp.url().to_string();
                let body = match tokio::time::timeout_at(deadline, resp.text()).await {
                    Ok(Ok(body)) => body,
                    Ok(Err(_)) | Err(_) => String::new(),
                };
                error_from_status(status, &headers, &body, model, &url)
            }
        };
        match policy.wait_for(&error, retry, deadline) {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                retry += 1;
            }
            None => return Err(error),
        }
    }
}
