//! medforge-text: the text algorithms curation, generation and evaluation share.
pub mod chat;
