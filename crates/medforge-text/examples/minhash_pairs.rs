//! Near-duplicate pairs of a JSONL file of `{"id": .., "text": ..}` rows, printed as JSON.
//! `bench/minhash_datasketch.py` runs it beside datasketch on the same file.
//!
//! ```sh
//! cargo run --release -p medforge-text --example minhash_pairs -- rows.jsonl \
//!     --num-perm 128 --threshold 0.8 --shingle word:3 --seed 1 [--weights 0.5,0.5]
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Instant;

use medforge_text::minhash::{MinHashLsh, MinHashParams, Shingle};
use serde_json::{json, Value};

const USAGE: &str = "usage: minhash_pairs FILE.jsonl [--num-perm N] [--threshold T] \
                     [--shingle word:N|char:N] [--seed S] [--bands B] [--rows R] \
                     [--weights FP,FN]";

fn parse_args() -> Result<(String, MinHashParams), String> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut params = MinHashParams::default();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--num-perm" => params.num_perm = num(&value(&arg)?)?,
            "--threshold" => params.threshold = value(&arg)?.parse().map_err(|e| format!("--threshold: {e}"))?,
            "--seed" => params.seed = num(&value(&arg)?)? as u64,
            "--bands" => params.bands = Some(num(&value(&arg)?)?),
            "--rows" => params.rows = Some(num(&value(&arg)?)?),
            "--weights" => {
                let v = value(&arg)?;
                let parse = |x: &str| x.trim().parse::<f64>().map_err(|e| format!("--weights: {e}"));
                params.weights = match v.split_once(',') {
                    Some((fp, fn_)) => (parse(fp)?, parse(fn_)?),
                    None => return Err(format!("--weights: expected FP,FN, got {v}")),
                };
            }
            "--shingle" => {
                let v = value(&arg)?;
                params.shingle = match v.split_once(':') {
                    Some(("word", n)) => Shingle::Word(num(n)?),
                    Some(("char", n)) => Shingle::Char(num(n)?),
                    _ => return Err(format!("--shingle: expected word:N or char:N, got {v}")),
                };
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ => file = Some(arg),
        }
    }
    Ok((file.ok_or(USAGE)?, params))
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|e| format!("{s}: {e}"))
}

fn read_rows(path: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(&line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        let field = |k: &str| match &row[k] {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Err(format!("{path}:{}: missing \"{k}\"", n + 1)),
            other => Ok(other.to_string()),
        };
        ids.push(field("id")?);
        texts.push(field("text")?);
    }
    Ok((ids, texts))
}

fn run() -> Result<(), String> {
    let (path, params) = parse_args()?;
    let (ids, texts) = read_rows(&path)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let lsh = MinHashLsh::new(&params).map_err(|e| e.to_string())?;

    let start = Instant::now();
    let sigs = lsh.hasher().signatures(&refs);
    let signature_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let pairs = lsh.similar_pairs(&sigs);
    let pairs_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let clusters = lsh.clusters(&sigs);
    let cluster_seconds = start.elapsed().as_secs_f64();

    let (bands, rows) = lsh.bands_rows();
    let out = json!({
        "rows_in": ids.len(),
        "num_perm": params.num_perm,
        "threshold": params.threshold,
        "seed": params.seed,
        "weights": params.weights,
        "shingle": params.shingle,
        "bands": bands,
        "rows": rows,
        "signature_seconds": signature_seconds,
        "pairs_seconds": pairs_seconds,
        "cluster_seconds": cluster_seconds,
        "clusters": clusters.clusters.len(),
        "duplicates": clusters.duplicate_count(),
        "pairs": pairs
            .iter()
            .map(|p| json!([ids[p.a], ids[p.b], p.jaccard]))
            .collect::<Vec<_>>(),
    });
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &out).map_err(|e| e.to_string())?;
    writeln!(stdout).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minhash_pairs: {e}");
            ExitCode::FAILURE
        }
    }
}
