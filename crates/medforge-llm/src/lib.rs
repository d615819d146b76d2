//! medforge LLM backends: the [`Backend`] trait, the OpenAI-compatible HTTP backend with retries,
//! rate limits and fleets ([`openai`]), the persistent response cache ([`cache`]), spend and budget
//! accounting ([`cost`]), the client that ties them together ([`client`]), Batch API files
//! ([`batch`]) and, with the `testing` feature, a fake OpenAI-compatible server ([`testing`]).

pub mod backend;
pub mod batch;
pub mod cache;
pub mod client;
pub mod concurrent;
pub mod config;
pub mod cost;
pub mod deadletter;
pub mod openai;
pub mod retry;
pub mod secret;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    choice_confidence, Backend, ChatRequest, ChatResponse, ChoiceLogprob, GenParams, LlmError, Loglik, LoglikScorer,
    Message, Role, Structure, Usage,
};
pub use cache::{cache_key, Cache, CacheError};
pub use client::{runtime, AllOutcomes, CacheMode, LlmClient, Outcome, Stop};
pub use concurrent::map_bounded;
pub use config::{build_backend, LlmSection};
pub use cost::{estimate_request, estimate_tokens, DryRunEstimate, Pricing, Spend, SpendSnapshot};
pub use deadletter::{read_dead_letters, DeadLetter, DeadLetterWriter};
pub use openai::{EndpointConfig, Fleet, OpenAiBackend, StructuredOutputApi};
pub use retry::{Backoff, RetryEvent, RetryPolicy};
pub use secret::{Secret, SecretEnv};
