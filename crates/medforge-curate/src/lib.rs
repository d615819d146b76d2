//! medforge-curate: stages behind one trait, and the runner that executes them.
