//! Perplexity of training rows per training type: the completion's log-likelihood given its prompt (the tokens a
//! fine-tune is trained on), pooled per type as `exp(total NLL / total tokens)`, against optional per-type targets.
//! Rows come from a formatted training set (`formatted/train.jsonl` of the `format` stage: `training_type`,
//! `prompt`, `completion`).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use medforge_llm::LoglikScorer;
use serde::Serialize;

use crate::runner::{EvalError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct PplRow {
    pub id: String,
    pub group: String,
    pub prompt: String,
    pub completion: String,
}

/// Read formatted rows (JSONL). A missing `prompt`/`completion` is an error naming the line.
pub fn load_rows(path: &Path, limit: Option<usize>) -> Result<Vec<PplRow>> {
    let f = std::fs::File::open(path).map_err(|e| EvalError::Config(format!("{}: {e}", path.display())))?;
    let mut rows = Vec::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| EvalError::Config(format!("{}:{}: {e}", path.display(), n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| EvalError::Config(format!("{}:{}: not JSON: {e}", path.display(), n + 1)))?;
        let field = |k: &str| -> Result<String> {
            v[k].as_str().map(str::to_string).ok_or_else(|| {
                EvalError::Config(format!(
                    "{}:{}: no string field `{k}` (expected a formatted training set: training_type, prompt, completion)",
                    path.display(),
                    n + 1
                ))
            })
        };
        rows.push(PplRow {
            id: v["id"].as_str().map(str::to_string).unwrap_or_else(|| format!("line{}", n + 1)),
            group: v["training_type"].as_str().unwrap_or("all").to_string(),
            prompt: field("prompt")?,
            completion: field("completion")?,
        });
        if limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
    }
    Ok(rows)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowScore {
    pub id: String,
    pub group: String,
    pub tokens: usize,
    pub nll: f64,
    pub perplexity: f64,
    /// The scorer's error, when the row could not be scored.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPpl {
    pub rows: usize,
    pub tokens: usize,
    pub nll: f64,
    pub perplexity: f64,
    pub target: Option<f64>,
    /// `perplexity <= target`, when there is a target.
    pub meets_target: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PplReport {
    pub model: String,
    pub groups: BTreeMap<String, GroupPpl>,
    pub overall: GroupPpl,
    pub errors: usize,
    pub rows: Vec<RowScore>,
}

fn pooled(scores: &[&RowScore], target: Option<f64>) -> GroupPpl {
    let tokens: usize = scores.iter().map(|s| s.tokens).sum();
    let nll: f64 = scores.iter().map(|s| s.nll).sum();
    let perplexity = if tokens > 0 { (nll / tokens as f64).exp() } else { f64::NAN };
    GroupPpl {
        rows: scores.len(),
        tokens,
        nll,
        perplexity,
        target,
        meets_target: target.map(|t| tokens > 0 && perplexity <= t),
    }
}

/// Score every row (in order, `concurrency` at a time) and pool per group.
pub async fn run(
    scorer: Arc<dyn LoglikScorer>,
    model: &str,
    rows: &[PplRow],
    targets: &BTreeMap<String, f64>,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> PplReport {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, r) in rows.iter().enumerate() {
        let (scorer, sem) = (scorer.clone(), sem.clone());
        let (ctx, cont) = (r.prompt.clone(), r.completion.clone());
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            (i, scorer.loglikelihood(&ctx, &cont).await)
        });
    }
    let mut out: Vec<Option<RowScore>> = vec![None; rows.len()];
    let mut done = 0;
    while let Some(res) = set.join_next().await {
        done += 1;
        progress(done, rows.len() as u64);
        let Ok((i, r)) = res else { continue };
        let row = &rows[i];
        out[i] = Some(match r {
            Ok(l) => RowScore {
                id: row.id.clone(),
                group: row.group.clone(),
                tokens: l.tokens,
                nll: -l.logprob,
                perplexity: if l.tokens > 0 { (-l.logprob / l.tokens as f64).exp() } else { f64::NAN },
                error: None,
            },
            Err(e) => RowScore {
                id: row.id.clone(),
                group: row.group.clone(),
                tokens: 0,
                nll: 0.0,
                perplexity: f64::NAN,
                error: Some(e.to_string()),
            },
        });
    }
    let scores: Vec<RowScore> = out.into_iter().map(|s| s.expect("every row reports")).collect();
    let ok: Vec<&RowScore> = scores.iter().filter(|s| s.error.is_none()).collect();
    let mut groups = BTreeMap::new();
    let names: std::collections::BTreeSet<&str> = ok.iter().map(|s| s.group.as_str()).collect();
    for g in names {
        let members: Vec<&RowScore> = ok.iter().copied().filter(|s| s.group == g).collect();
        groups.insert(g.to_string(), pooled(&members, targets.get(g).copied()));
    }
    PplReport {
        model: model.to_string(),
        overall: pooled(&ok, targets.get("all").copied()),
        errors: scores.len() - ok.len(),
        groups,
        rows: scores,
    }
}

/// Parse `TYPE=PPL` targets (`text=12`, `letter=2.5`; `all` for the pooled figure).
pub fn parse_targets(specs: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for s in specs {
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                EvalError::Config(format!("target `{part}`: write TYPE=PERPLEXITY, e.g. text=12 or letter_reasoning=4"))
            })?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| EvalError::Config(format!("target `{part}`: `{}` is not a number", v.trim())))?;
            m.insert(k.trim().to_string(), v);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use medforge_llm::{LlmError, Loglik};

    /// A scorer with a known answer: every continuation character costs 0.5 nats, one token per character.
    struct PerChar;

    #[async_trait::async_trait]
    impl LoglikScorer for PerChar {
        async fn loglikelihood(&self, _c: &str, cont: &str) -> std::result::Result<Loglik, LlmError> {
            if cont.is_empty() {
                return Err(LlmError::fatal("llm.bad", "empty"));
            }
            Ok(Loglik { logprob: -0.5 * cont.chars().count() as f64, tokens: cont.chars().count() })
        }
        fn identity(&self) -> String {
            "per-char".into()
        }
    }

    #[tokio::test]
    async fn pools_per_type_and_checks_targets() {
        let row = |id: &str, g: &str, c: &str| PplRow {
            id: id.into(),
            group: g.into(),
            prompt: "p".into(),
            completion: c.into(),
        };
        let rows =
            vec![row("a", "text", "abcd"), row("b", "text", "ab"), row("c", "letter", "B"), row("d", "letter", "")];
        let targets = parse_targets(&["text=2,letter=1.2".into()]).unwrap();
        let r = run(Arc::new(PerChar), "m", &rows, &targets, 2, &|_, _| {}).await;
        let e05 = 0.5f64.exp();
        assert_eq!(r.groups["text"].tokens, 6);
        assert!((r.groups["text"].perplexity - e05).abs() < 1e-12);
        assert_eq!(r.groups["text"].meets_target, Some(true));
        assert_eq!(r.groups["letter"].rows, 1, "the failed row is not pooled");
        assert_eq!(r.groups["letter"].meets_target, Some(false));
        assert_eq!(r.errors, 1);
        assert!(r.rows[3].error.is_some());
        assert!(parse_targets(&["text:3".into()]).is_err());
        assert!(parse_targets(&["text=x".into()]).is_err());
    }

    #[test]
    fn rows_without_prompt_are_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"training_type\":\"text\",\"prompt\":\"a\",\"completion\":\"b\"}\n{\"text\":\"x\"}\n")
            .unwrap();
        let err = load_rows(&p, None).unwrap_err().to_string();
        assert!(err.contains("t.jsonl:2") && err.contains("prompt"), "{err}");
        assert_eq!(load_rows(&p, Some(1)).unwrap().len(), 1);
    }
}
