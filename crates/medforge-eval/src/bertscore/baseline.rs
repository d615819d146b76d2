//! bert-score's baseline rescaling (`rescale_with_baseline=True`): the package ships, per language and model, a
//! TSV of the mean P/R/F of random sentence pairs at every layer (`rescale_baseline/{lang}/{model}.tsv`, header
//! `LAYER,P,R,F`, row `k` = the hidden state after `k` blocks). A score `x` becomes `(x - b) / (1 - b)` with `b`
//! the baseline of the layer in use, for P, R and F each (F is rescaled, not recomputed), so unrelated sentences
//! land near 0 instead of in a narrow band near the top. medforge reads the file from a path.
use std::path::{Path, PathBuf};

use super::{BertScore, BertScoreError};

/// A baseline file: per layer, the P/R/F baselines.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub path: PathBuf,
    rows: Vec<(usize, [f64; 3])>,
}

impl Baseline {
    /// Read a bert-score baseline TSV (comma-separated despite the name: `LAYER,P,R,F`).
    pub fn load(path: &Path) -> Result<Baseline, BertScoreError> {
        let err = |msg: String| BertScoreError::Load { path: path.to_path_buf(), msg };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines.next().ok_or_else(|| err("empty baseline file".into()))?;
        let cols: Vec<String> = header.split([',', '\t']).map(|c| c.trim().to_ascii_uppercase()).collect();
        let at = |name: &str| {
            cols.iter().position(|c| c == name).ok_or_else(|| err(format!("no {name} column in the header `{header}`")))
        };
        let (li, pi, ri, fi) = (at("LAYER")?, at("P")?, at("R")?, at("F")?);
        let mut rows = Vec::new();
        for (n, line) in lines {
            let v: Vec<&str> = line.split([',', '\t']).map(str::trim).collect();
            let num = |i: usize| -> Result<f64, BertScoreError> {
                v.get(i)
                    .and_then(|x| x.parse::<f64>().ok())
                    .ok_or_else(|| err(format!("line {}: column {} is not a number", n + 1, i + 1)))
            };
            rows.push((num(li)? as usize, [num(pi)?, num(ri)?, num(fi)?]));
        }
        if rows.is_empty() {
            return Err(err("no baseline rows".into()));
        }
        Ok(Baseline { path: path.to_path_buf(), rows })
    }

    /// The baselines of `layer` (bert-score's `iloc[num_layers]`: the row of that layer).
    pub fn for_layer(&self, layer: usize) -> Option<[f64; 3]> {
        self.rows.iter().find(|(l, _)| *l == layer).map(|(_, b)| *b)
    }

    /// Rescale one score with the baselines of `layer`.
    pub fn rescale(&self, s: BertScore, layer: usize) -> Result<BertScore, BertScoreError> {
        let [bp, br, bf] = self.for_layer(layer).ok_or_else(|| BertScoreError::Load {
            path: self.path.clone(),
            msg: format!("no baseline for layer {layer} (the file has layers {:?})", self.layers()),
        })?;
        let r = |x: f64, b: f64| (x - b) / (1.0 - b);
        Ok(BertScore { p: r(s.p, bp), r: r(s.r, br), f: r(s.f, bf) })
    }

    pub fn layers(&self) -> Vec<usize> {
        self.rows.iter().map(|(l, _)| *l).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_package_format_and_rescales_per_layer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tsv");
        std::fs::write(&p, "LAYER,P,R,F\n0,0.5,0.6,0.55\n1,0.8,0.8,0.8\n").unwrap();
        let b = Baseline::load(&p).unwrap();
        let s = b.rescale(BertScore { p: 0.9, r: 0.9, f: 0.9 }, 1).unwrap();
        assert!((s.p - 0.5).abs() < 1e-12 && (s.f - 0.5).abs() < 1e-12);
        let s0 = b.rescale(BertScore { p: 0.5, r: 1.0, f: 0.55 }, 0).unwrap();
        assert_eq!((s0.p, s0.r, s0.f), (0.0, 1.0, 0.0));
        assert!(b.rescale(s, 7).unwrap_err().to_string().contains("no baseline for layer 7"));
        std::fs::write(&p, "LAYER,P,R\n0,1,2\n").unwrap();
        assert!(Baseline::load(&p).unwrap_err().to_string().contains("no F column"));
    }
}
