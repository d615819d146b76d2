//! Perplexity of training rows per training type: the completion's log-likelihood given its prompt (the tokens a
//! fine-tune is trained on), pooled per type as `exp(total NLL / total tokens)`, against optional per-type targets.
//! Rows come from a formatted set (`formatted/<split>.jsonl` of the `format` stage, read as
//! [`medforge_data::formatted::FormattedRow`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use medforge_data::formatted::{read_jsonl, FormattedRow};
use medforge_llm::{map_bounded, LoglikScorer};
use serde::Serialize;

use crate::runner::{EvalError, Result};

/// Read a formatted set's rows ([`medforge_data::formatted::read_jsonl`]: a line that is not a formatted row is an
/// error naming the file and line); `limit` keeps the first N.
pub fn load_rows(path: &Path, limit: Option<usize>) -> Result<Vec<FormattedRow>> {
    let mut rows = read_jsonl(path)?;
    if let Some(n) = limit {
        rows.truncate(n);
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

/// Score every row (in order, `concurrency` at a time) and pool per training type.
pub async fn run(
    scorer: Arc<dyn LoglikScorer>,
    model: &str,
    rows: &[FormattedRow],
    targets: &BTreeMap<String, f64>,
    concurrency: usize,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> PplReport {
    let pairs: Vec<(String, String)> = rows.iter().map(|r| (r.prompt.clone(), r.completion.clone())).collect();
    let results = map_bounded(
        pairs,
        concurrency,
        |(ctx, cont)| {
            let scorer = scorer.clone();
            async move { scorer.loglikelihood(&ctx, &cont).await }
        },
        progress,
    )
    .await;
    let scores: Vec<RowScore> = rows
        .iter()
        .zip(results)
        .map(|(row, r)| {
            let group = row.training_type.as_str().to_string();
            match r {
                Ok(l) => RowScore {
                    id: row.id.clone(),
                    group,
                    tokens: l.tokens,
                    nll: -l.logprob,
                    perplexity: if l.tokens > 0 { (-l.logprob / l.tokens as f64).exp() } else { f64::NAN },
                    error: None,
                },
                Err(e) => RowScore {
                    id: row.id.clone(),
                    group,
                    tokens: 0,
                    nll: 0.0,
                    perplexity: f64::NAN,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
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

/// The training types (and `all` for the pooled figure) whose perplexity is above their target.
pub fn missed_targets(report: &PplReport) -> Vec<String> {
    let mut missed: Vec<String> =
        report.groups.iter().filter(|(_, g)| g.meets_target == Some(false)).map(|(n, _)| n.clone()).collect();
    if report.overall.meets_target == Some(false) {
        missed.push("all".into());
    }
    missed
}

/// A result on the wrong side of its target (perplexity above, accuracy or a score below): `medforge perplexity` and
/// `medforge eval` exit with status 3 on it, so loop drivers and CI can tell a
/// missed target from a failure.
#[derive(Debug, thiserror::Error)]
#[error("targets not met: {}", .0.join(", "))]
pub struct TargetsMissed(pub Vec<String>);

/// Write `perplexity.json` (per type and pooled) and `perplexity_rows.csv` (every row) into `out`.
pub fn write_outputs(out: &Path, report: &PplReport, data: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| crate::EvalError::io(out, e))?;
    let rows: Vec<Vec<String>> = report
        .rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.group.clone(),
                r.tokens.to_string(),
                format!("{:.6}", r.nll),
                format!("{:.6}", r.perplexity),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::report::write_csv(
        &out.join("perplexity_rows.csv"),
        &["id", "training_type", "tokens", "nll", "perplexity", "error"],
        &rows,
    )?;
    let summary = serde_json::json!({"model": report.model, "data": data.display().to_string(),
        "groups": report.groups, "overall": report.overall, "errors": report.errors});
    crate::report::write_json(&out.join("perplexity.json"), &summary)
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
        let row = |id: &str, g: &str, c: &str| FormattedRow {
            id: id.into(),
            training_type: medforge_data::formatted::TrainingType::parse(g).unwrap(),
            messages: vec![],
            prompt: "p".into(),
            completion: c.into(),
            text: format!("p{c}"),
            chosen: None,
            rejected: None,
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
    fn rows_that_are_not_formatted_rows_are_errors_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let good = r#"{"id":"a","training_type":"text","messages":[],"prompt":"a","completion":"b","text":"ab","chosen":null,"rejected":null}"#;
        std::fs::write(&p, format!("{good}\n{good}\n{{\"text\":\"x\"}}\n")).unwrap();
        let err = load_rows(&p, None).unwrap_err().to_string();
        assert!(err.contains("t.jsonl:3") && err.contains("not a formatted row"), "{err}");
        std::fs::write(&p, format!("{good}\n{good}\n")).unwrap();
        assert_eq!(load_rows(&p, Some(1)).unwrap().len(), 1);
        assert_eq!(load_rows(&p, None).unwrap().len(), 2);
    }
}
