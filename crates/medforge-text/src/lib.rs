//! medforge-text: the text algorithms curation, generation and evaluation share.
pub mod answer;
pub mod chat;
pub mod error;
pub mod lang;
pub mod minhash;
pub mod ngram;
pub mod normalize;
pub mod outline;
pub mod rng;
pub mod shingle;
pub mod tokens;
