//! medforge-curate: stages behind one trait, and the runner that executes them.

pub mod format;
pub mod sample;
pub mod split;
pub mod taxonomy;
pub mod verify;
