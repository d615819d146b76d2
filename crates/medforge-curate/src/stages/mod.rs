//! The deterministic stages. Each is a small type behind [`crate::Stage`].

pub mod decontam;
pub mod dedup;
pub(crate) mod fields;
pub mod format;
pub mod labels;
pub mod language;
pub mod normalize;
pub mod quality;
pub mod sample;
pub mod split;
pub mod tokens;
