//! The stages, each a small type behind [`crate::Stage`]: the deterministic ones, and the LLM ones
//! (`label`, `difficulty`, `rewrite`, `dpo_pairs`, `generate`) over [`llm`], their shared keys in [`call`].

pub mod call;
pub mod decontam;
pub mod dedup;
pub mod difficulty;
pub mod dpo_pairs;
pub(crate) mod fields;
pub mod format;
pub mod generate;
pub mod label;
pub mod labels;
pub mod language;
pub mod llm;
pub mod normalize;
pub mod quality;
pub mod rewrite;
pub mod sample;
pub mod split;
pub mod structure;
pub mod tokens;
