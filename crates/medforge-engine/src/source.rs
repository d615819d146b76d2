//! Where a model runs, as evaluation, perplexity, training and recipes name it: an OpenAI-compatible endpoint or the
//! in-process engine ([`ModelSource`]), opened into a chat backend and a log-likelihood scorer over the same model
//! ([`OpenedModel`]).

use std::path::PathBuf;
use std::sync::Arc;

use medforge_llm::openai::{EndpointConfig, OpenAiBackend};
use medforge_llm::{Backend, LlmError, LoglikScorer, SecretEnv};

use crate::backend::LocalBackend;
use crate::engine::{Engine, LoadOptions};
use crate::EngineError;

/// A model to evaluate or score with.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// An OpenAI-compatible server (a remote API, `medforge serve`, vLLM, llama.cpp's server).
    Endpoint {
        base_url: String,
        model: String,
        /// The environment variable that holds the API key (never the key).
        api_key_env: Option<SecretEnv>,
        /// Requests in flight.
        concurrency: usize,
    },
    /// A GGUF file or Hugging Face folder run in-process (`load` carries requantisation, an adapter, a name).
    Local { path: PathBuf, load: LoadOptions },
}

/// A chat backend and a log-likelihood scorer over one model, its name, and how many requests to keep in flight.
pub struct OpenedModel {
    pub name: String,
    pub chat: Arc<dyn Backend>,
    pub scorer: Arc<dyn LoglikScorer>,
    pub concurrency: usize,
}

/// Why a model could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("loading {}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: EngineError,
    },
    #[error(transparent)]
    Endpoint(#[from] LlmError),
}

impl ModelSource {
    /// Open the model: load the engine (it runs one request at a time, in order, so requests that share a prefix,
    /// the options of one question, reuse its prefix cache), or build the endpoint's client (chat and
    /// `/completions` log-likelihoods share its concurrency limit, rate limits and retries).
    pub fn open(&self) -> Result<OpenedModel, OpenError> {
        match self {
            ModelSource::Local { path, load } => {
                let engine =
                    Engine::load(path, load).map_err(|source| OpenError::Load { path: path.clone(), source })?;
                let local = LocalBackend::new(engine);
                let name = Backend::model(&local);
                Ok(OpenedModel { name, chat: Arc::new(local.clone()), scorer: Arc::new(local), concurrency: 1 })
            }
            ModelSource::Endpoint { base_url, model, api_key_env, concurrency } => {
                let mut cfg = EndpointConfig::new(base_url, model);
                cfg.api_key_env = api_key_env.clone();
                cfg.max_concurrency = (*concurrency).max(1);
                let endpoint = Arc::new(OpenAiBackend::new(cfg)?);
                Ok(OpenedModel {
                    name: model.clone(),
                    chat: endpoint.clone(),
                    scorer: endpoint,
                    concurrency: (*concurrency).max(1),
                })
            }
        }
    }
}
