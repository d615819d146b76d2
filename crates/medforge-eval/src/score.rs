//! `medforge score`: reference-based text metrics over pairs of texts, per pair and pooled. The inputs are read with
//! [`read_texts`] / [`read_pairs`] (which name file and line on bad input), the metrics chosen as [`Metric`]s, and
//! [`score`] returns the summary and every pair's scores ([`ScoreReport`]).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::bertscore::BertScorer;
use crate::error::{EvalError, Result};
use crate::metrics::bleu::{corpus_bleu, sentence_bleu, BleuConfig, BleuTokenizer};
use crate::metrics::meteor::Meteor;
use crate::metrics::nltk_bleu::{nltk_bleu, Smoothing};
use crate::metrics::rouge::{rouge, RougeConfig};
use crate::metrics::squad::squad_scores;
use crate::scores::{answer_matches, hierarchy, korean_proficiency, reasoning_format, split_reasoning, type4_score};

/// A metric `medforge score` computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    /// sacrebleu corpus BLEU, BLEU-1..4 and mean sentence BLEU (0-100).
    Bleu,
    /// rouge-score ROUGE-1/2/L/Lsum F-measures.
    Rouge,
    /// nltk METEOR (WordNet synonyms where WordNet is found).
    Meteor,
    /// SQuAD exact match.
    Em,
    /// SQuAD token F1.
    F1,
    /// The MedGemma Korean pipeline's reasoning-format score (hypothesis only).
    Format,
    /// Hierarchical-list compliance (hypothesis only).
    Hierarchy,
    /// Hangul ratio and medical-term coverage (hypothesis only).
    Korean,
    /// BERTScore P/R/F1 over a local encoder.
    Bertscore,
    /// The MedGemma Korean pipeline's type-4 score (exact answer, reasoning length, key terms from `--terms`).
    Type4,
    /// nltk's sentence BLEU-1..4 (0-1, smoothing method1), the Meerkat pipeline's BLEU.
    NltkBleu,
}

impl Metric {
    pub const NAMES: [&'static str; 11] =
        ["bleu", "rouge", "meteor", "em", "f1", "format", "hierarchy", "korean", "bertscore", "type4", "nltk-bleu"];

    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "bleu" => Metric::Bleu,
            "rouge" => Metric::Rouge,
            "meteor" => Metric::Meteor,
            "em" => Metric::Em,
            "f1" => Metric::F1,
            "format" => Metric::Format,
            "hierarchy" => Metric::Hierarchy,
            "korean" => Metric::Korean,
            "bertscore" => Metric::Bertscore,
            "type4" => Metric::Type4,
            "nltk-bleu" | "nltk_bleu" => Metric::NltkBleu,
            _ => return None,
        })
    }

    /// A comma-separated list (`bleu,rouge,em`), or an error naming the unknown one.
    pub fn parse_list(s: &str) -> Result<Vec<Metric>> {
        let mut out = Vec::new();
        for m in s.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let metric = Metric::parse(m)
                .ok_or_else(|| EvalError::Config(format!("unknown metric `{m}`: use {}", Metric::NAMES.join(", "))))?;
            if !out.contains(&metric) {
                out.push(metric);
            }
        }
        Ok(out)
    }
}

/// BERTScore settings: the encoder folder and bert-score's options.
#[derive(Debug, Clone)]
pub struct BertScoreOptions {
    /// A Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json).
    pub model: PathBuf,
    /// bert-score's `num_layers` (the hidden state after this many blocks); the last when `None`.
    pub layer: Option<usize>,
    pub idf: bool,
    pub batch_size: usize,
    /// bert-score's baseline file for rescaling (`rescale_with_baseline`), read from a path.
    pub baseline: Option<PathBuf>,
}

impl BertScoreOptions {
    /// Load the encoder and score the pairs, rescaled with the baseline when one is set.
    pub fn score(&self, refs: &[&str], hyps: &[&str]) -> Result<(Vec<crate::bertscore::BertScore>, usize)> {
        let mut scorer = BertScorer::load(&self.model, self.layer)
            .map_err(|e| EvalError::Model(format!("loading the BERTScore encoder {}: {e}", self.model.display())))?;
        scorer.batch_size = self.batch_size.max(1);
        let mut v = scorer.score(refs, hyps, self.idf).map_err(|e| EvalError::Model(format!("BERTScore: {e}")))?;
        if let Some(path) = &self.baseline {
            let b = crate::bertscore::baseline::Baseline::load(path).map_err(|e| EvalError::Config(e.to_string()))?;
            for s in v.iter_mut() {
                *s = b.rescale(*s, scorer.layers()).map_err(|e| EvalError::Config(e.to_string()))?;
            }
        }
        Ok((v, scorer.layers()))
    }
}

/// What to compute and how.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub metrics: Vec<Metric>,
    pub bleu_tokenizer: BleuTokenizer,
    pub rouge: RougeConfig,
    /// A WordNet dict folder for METEOR (searched in the usual places when `None`).
    pub wordnet: Option<PathBuf>,
    /// A medical term list (one per line) for the Korean score's term coverage.
    pub terms: Option<PathBuf>,
    /// Options per item for the reasoning-format score's `A)`..`E)` analysis.
    pub options: usize,
    /// Needed when `metrics` has [`Metric::Bertscore`].
    pub bertscore: Option<BertScoreOptions>,
}

/// The pooled figures (`pairs` and one entry per metric column) and each pair's scores.
#[derive(Debug, Clone, Default)]
pub struct ScoreReport {
    pub summary: Map<String, Value>,
    pub per_pair: Vec<Map<String, Value>>,
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Put a column into every pair's scores and its mean into the summary.
fn column(report: &mut ScoreReport, name: &str, values: &[f64]) {
    for (p, x) in report.per_pair.iter_mut().zip(values) {
        p.insert(name.into(), json!(x));
    }
    report.summary.insert(name.into(), json!(mean(values)));
}

/// Score `hyps` against `refs` (pairs by position).
pub fn score(refs: &[String], hyps: &[String], opts: &ScoreOptions) -> Result<ScoreReport> {
    if refs.len() != hyps.len() {
        return Err(EvalError::Config(format!(
            "{} references but {} hypotheses: they pair up line by line",
            refs.len(),
            hyps.len()
        )));
    }
    let n = refs.len();
    let has = |m: Metric| opts.metrics.contains(&m);
    let mut r = ScoreReport { summary: Map::new(), per_pair: vec![Map::new(); n] };
    r.summary.insert("pairs".into(), json!(n));
    if has(Metric::Bleu) {
        let tok = opts.bleu_tokenizer;
        let rr: Vec<Vec<&str>> = refs.iter().map(|x| vec![x.as_str()]).collect();
        let c = corpus_bleu(&BleuConfig::default().with_tokenizer(tok), hyps, &rr);
        r.summary.insert("bleu".into(), json!(c.score));
        r.summary.insert("bleu_tokenize".into(), json!(tok.name()));
        for k in 1..=4 {
            let ck = corpus_bleu(&BleuConfig::default().with_tokenizer(tok).with_max_order(k), hyps, &rr);
            r.summary.insert(format!("bleu{k}"), json!(ck.score));
        }
        let sc = BleuConfig::sentence().with_tokenizer(tok);
        let s: Vec<f64> = (0..n).map(|i| sentence_bleu(&sc, &hyps[i], &[&refs[i]]).score).collect();
        for (p, v) in r.per_pair.iter_mut().zip(&s) {
            p.insert("bleu".into(), json!(v));
        }
        r.summary.insert("sentence_bleu_mean".into(), json!(mean(&s)));
    }
    if has(Metric::Rouge) {
        let rs: Vec<_> = (0..n).map(|i| rouge(&opts.rouge, &refs[i], &hyps[i])).collect();
        column(&mut r, "rouge1", &rs.iter().map(|s| s.rouge1.fmeasure).collect::<Vec<_>>());
        column(&mut r, "rouge2", &rs.iter().map(|s| s.rouge2.fmeasure).collect::<Vec<_>>());
        column(&mut r, "rougeL", &rs.iter().map(|s| s.rouge_l.fmeasure).collect::<Vec<_>>());
        column(&mut r, "rougeLsum", &rs.iter().map(|s| s.rouge_lsum.fmeasure).collect::<Vec<_>>());
    }
    if has(Metric::Meteor) {
        let m = Meteor::find(opts.wordnet.as_deref());
        let v: Vec<f64> = (0..n).map(|i| m.score(&[&refs[i]], &hyps[i])).collect();
        column(&mut r, "meteor", &v);
        r.summary.insert("meteor_wordnet".into(), json!(m.wordnet.is_some()));
    }
    if has(Metric::Em) || has(Metric::F1) {
        let s: Vec<_> = (0..n).map(|i| squad_scores(&hyps[i], &refs[i])).collect();
        if has(Metric::Em) {
            column(&mut r, "em", &s.iter().map(|x| x.exact_match).collect::<Vec<_>>());
        }
        if has(Metric::F1) {
            column(&mut r, "f1", &s.iter().map(|x| x.f1).collect::<Vec<_>>());
        }
    }
    if has(Metric::Bertscore) {
        let b = opts.bertscore.as_ref().ok_or_else(|| {
            EvalError::Config(
                "bertscore needs an encoder: --bertscore-model DIR (a Hugging Face BERT folder with config.json, \
                 model.safetensors, tokenizer.json) or $MEDFORGE_BERTSCORE_MODEL"
                    .into(),
            )
        })?;
        let rr: Vec<&str> = refs.iter().map(String::as_str).collect();
        let hh: Vec<&str> = hyps.iter().map(String::as_str).collect();
        let (v, layers) = b.score(&rr, &hh)?;
        column(&mut r, "bertscore_p", &v.iter().map(|x| x.p).collect::<Vec<_>>());
        column(&mut r, "bertscore_r", &v.iter().map(|x| x.r).collect::<Vec<_>>());
        column(&mut r, "bertscore_f1", &v.iter().map(|x| x.f).collect::<Vec<_>>());
        r.summary.insert("bertscore_layer".into(), json!(layers));
        r.summary.insert("bertscore_idf".into(), json!(b.idf));
        r.summary.insert("bertscore_rescaled".into(), json!(b.baseline.is_some()));
    }
    if has(Metric::Format) {
        // The reference is the expected answer: the score weighs correctness 2/3 and format 1/3.
        let v: Vec<f64> = hyps
            .iter()
            .zip(refs)
            .map(|(h, r)| reasoning_format(h, opts.options, answer_matches(&split_reasoning(h).1, r)).score)
            .collect();
        column(&mut r, "format", &v);
    }
    if has(Metric::Hierarchy) {
        let v: Vec<_> = hyps.iter().map(|h| hierarchy(h)).collect();
        column(&mut r, "hierarchy", &v.iter().map(|x| x.score).collect::<Vec<_>>());
        for (p, x) in r.per_pair.iter_mut().zip(&v) {
            p.insert("hierarchy_compliant".into(), json!(x.compliant));
        }
        r.summary.insert(
            "hierarchy_compliant_share".into(),
            json!(v.iter().filter(|x| x.compliant).count() as f64 / n.max(1) as f64),
        );
    }
    if has(Metric::Type4) {
        // The same term-file format as the korean score's `--terms`.
        let terms: Vec<String> = match &opts.terms {
            Some(t) => medforge_text::lang::TermList::from_file(t)
                .map_err(|e| EvalError::Config(format!("--terms: {e}")))?
                .terms()
                .to_vec(),
            None => Vec::new(),
        };
        let v: Vec<f64> = hyps.iter().zip(refs).map(|(h, r)| type4_score(h, r, &terms)).collect();
        column(&mut r, "type4", &v);
        r.summary.insert("type4_target_met".into(), json!(mean(&v) >= crate::scores::TYPE4_TARGET));
    }
    if has(Metric::NltkBleu) {
        let v: Vec<_> = (0..n).map(|i| nltk_bleu(&refs[i], &hyps[i], Smoothing::Method1, false)).collect();
        column(&mut r, "nltk_bleu1", &v.iter().map(|x| x.bleu1).collect::<Vec<_>>());
        column(&mut r, "nltk_bleu2", &v.iter().map(|x| x.bleu2).collect::<Vec<_>>());
        column(&mut r, "nltk_bleu3", &v.iter().map(|x| x.bleu3).collect::<Vec<_>>());
        column(&mut r, "nltk_bleu4", &v.iter().map(|x| x.bleu4).collect::<Vec<_>>());
    }
    if has(Metric::Korean) {
        let terms = match &opts.terms {
            Some(t) => Some(
                medforge_text::lang::TermList::from_file(t).map_err(|e| EvalError::Config(format!("--terms: {e}")))?,
            ),
            None => None,
        };
        let v: Vec<_> = hyps.iter().map(|h| korean_proficiency(h, terms.as_ref())).collect();
        column(&mut r, "hangul_ratio", &v.iter().map(|x| x.hangul_ratio).collect::<Vec<_>>());
        if terms.is_some() {
            let c: Vec<f64> = v.iter().map(|x| x.term_coverage.unwrap_or(0.0)).collect();
            column(&mut r, "term_coverage", &c);
        }
    }
    Ok(r)
}

/// Texts, one per line of a `.txt` file, or from a `.jsonl` file of strings or of objects with `text` (or `hyp`,
/// `ref`, `prediction`, `reference`, `answer`).
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    if path.extension().is_none_or(|e| e != "jsonl") {
        return Ok(text.lines().map(str::to_string).collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| EvalError::Config(format!("{}: not JSON: {e}", at())))?;
        let s = match &v {
            Value::String(s) => s.clone(),
            Value::Object(o) => ["text", "hyp", "ref", "prediction", "reference", "answer"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .ok_or_else(|| EvalError::Config(format!("{}: no `text` field", at())))?
                .to_string(),
            _ => return Err(EvalError::Config(format!("{}: expected a string or an object", at()))),
        };
        out.push(s);
    }
    Ok(out)
}

/// `(refs, hyps)` from a JSONL file of `{"ref": .., "hyp": ..}` objects.
pub fn read_pairs(path: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
    let (mut refs, mut hyps) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| EvalError::Config(format!("{}: not JSON: {e}", at())))?;
        let field =
            |k: &str| v[k].as_str().map(str::to_string).ok_or_else(|| EvalError::Config(format!("{}: no `{k}`", at())));
        refs.push(field("ref")?);
        hyps.push(field("hyp")?);
    }
    Ok((refs, hyps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::rouge::RougeTokenizer;

    fn opts(metrics: &str) -> ScoreOptions {
        ScoreOptions {
            metrics: Metric::parse_list(metrics).unwrap(),
            bleu_tokenizer: BleuTokenizer::parse("13a").unwrap(),
            rouge: RougeConfig { stemmer: false, tokenizer: RougeTokenizer::Reference },
            wordnet: None,
            terms: None,
            options: 5,
            bertscore: None,
        }
    }

    #[test]
    fn columns_per_pair_and_means() {
        let refs = vec!["the heart pumps blood".to_string(), "insulin lowers glucose".to_string()];
        let hyps = vec!["the heart pumps blood".to_string(), "aspirin".to_string()];
        let r = score(&refs, &hyps, &opts("em,f1,rouge")).unwrap();
        assert_eq!(r.summary["pairs"], 2);
        assert_eq!(r.per_pair[0]["em"], 1.0);
        assert_eq!(r.per_pair[1]["em"], 0.0);
        assert_eq!(r.summary["em"], 0.5);
        assert!(r.per_pair[0].contains_key("rougeL") && !r.summary.contains_key("bleu"));
        assert!(score(&refs, &hyps[..1], &opts("em")).unwrap_err().to_string().contains("2 references but 1"));
        assert!(score(&refs, &hyps, &opts("bertscore")).unwrap_err().to_string().contains("--bertscore-model"));
        let e = Metric::parse_list("bleu,rogue").unwrap_err().to_string();
        assert!(e.contains("`rogue`"), "{e}");
    }

    #[test]
    fn inputs_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.jsonl");
        std::fs::write(&p, "\"a\"\n{\"text\": \"b\"}\n{\"x\": 1}\n").unwrap();
        let e = read_texts(&p).unwrap_err().to_string();
        assert!(e.contains("h.jsonl:3") && e.contains("`text`"), "{e}");
        let pairs = dir.path().join("p.jsonl");
        std::fs::write(&pairs, "{\"ref\": \"a\", \"hyp\": \"b\"}\n{\"ref\": \"c\"}\n").unwrap();
        let e = read_pairs(&pairs).unwrap_err().to_string();
        assert!(e.contains("p.jsonl:2") && e.contains("`hyp`"), "{e}");
    }
}
