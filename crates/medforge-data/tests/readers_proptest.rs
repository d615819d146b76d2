//! Property tests for the readers: whatever bytes a file holds (random bytes, or a valid fixture with
//! random mutations), `read_all` never panics under either `on_error` policy, every error it returns
//! is a located row error pointing into the input, and under `skip` it always returns `Ok`.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{ListBuilder, StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{DataType, Field};
use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::mapping::{FieldMapping, FieldSource};
use medforge_data::read::Limits;
use medforge_data::write::{write_all, OutputFormat};
use medforge_data::{Error, Record};
use proptest::prelude::*;
use proptest::sample::Index;

/// Cases per property; set `PROPTEST_CASES` for a longer run.
const CASES: u32 = 64;

fn config() -> ProptestConfig {
    let mut config = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config
}

fn fixture(rel: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Limits small enough that mutated fixtures run into them.
fn tight_limits() -> Limits {
    Limits { max_line_bytes: 600, max_field_bytes: 300, max_file_bytes: 1 << 20, max_depth: 8 }
}

/// One edit to a file's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Overwrite one byte.
    Set(Index, u8),
    /// Remove up to n bytes.
    Delete(Index, usize),
    /// Insert a token that matters to some format.
    Insert(Index, &'static [u8]),
    /// Cut the file here.
    Truncate(Index),
    /// Copy a span somewhere else (repeats structure: nesting, duplicate keys, extra rows).
    Splice(Index, usize, Index),
}

const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\n",
    b"\r\n",
    b"\t",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"null",
    b"7",
    b"<",
    b">",
    b"</",
    b"/>",
    b"&",
    b"&amp;",
    b"&lol;",
    b"&#0;",
    b"<!DOCTYPE d [<!ENTITY e \"x\">]>",
    b"<![CDATA[",
    b"]]>",
    b"<QAPair>",
    b"<Answer>",
    b"<!--",
    b"\xff",
    b"\xc3",
    b"\xef\xbb\xbf",
    b"\0",
    b"\"\"",
    b"PAR1",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        2 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        3 => (any::<Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), 1usize..256, any::<Index>()).prop_map(|(a, n, b)| Mutation::Splice(a, n, b)),
    ]
}

impl Mutation {
    fn apply(&self, b: &mut Vec<u8>) {
        // `Index::index` needs a non-empty range; positions go up to and including the end.
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match self {
            Mutation::Set(i, v) => {
                if !b.is_empty() {
                    let i = i.index(b.len());
                    b[i] = *v;
                }
            }
            Mutation::Delete(i, n) => {
                let i = at(i, b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Insert(i, t) => {
                let i = at(i, b);
                b.splice(i..i, t.iter().copied());
            }
            Mutation::Truncate(i) => {
                let i = at(i, b);
                b.truncate(i);
            }
            Mutation::Splice(from, n, to) => {
                let s = at(from, b);
                let span: Vec<u8> = b[s..(s + n).min(b.len())].to_vec();
                let d = at(to, b);
                b.splice(d..d, span);
            }
        }
    }
}

/// Random bytes, or one of `fixtures` with a few mutations.
fn file_bytes(fixtures: Arc<Vec<Vec<u8>>>, prefixes: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let n = fixtures.len();
    prop_oneof![
        1 => (prop::sample::select(prefixes), prop::collection::vec(any::<u8>(), 0..1024)).prop_map(|(p, mut b)| {
            b.splice(0..0, p.iter().copied());
            b
        }),
        3 => (0..n, prop::collection::vec(mutation(), 1..8)).prop_map(move |(i, ms)| {
            let mut b = fixtures[i].clone();
            for m in &ms {
                m.apply(&mut b);
            }
            b
        }),
    ]
}

/// Write `bytes` as `name` and read it under both policies; check the invariants.
fn check(name: &str, bytes: &[u8], tight: bool, cfg: &dyn Fn(&Path) -> InputConfig) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let mut c = cfg(&path);
    if tight {
        c.limits = Some(tight_limits());
    }
    let input = c.resolve().expect("config resolves");

    let fail_log = dir.path().join("fail-rejects.jsonl");
    let failed = read_all(&input, OnError::Fail, &mut RejectLog::new(&fail_log));
    let fail_records = match failed {
        Ok((records, stats)) => {
            prop_assert_eq!(stats.rows_ok as usize, records.len());
            prop_assert_eq!(stats.rejected_total(), 0);
            Some(records)
        }
        Err(Error::Row(e)) => {
            prop_assert!(e.location.file.starts_with(dir.path()), "error outside the input: {}", e);
            prop_assert!(e.code.starts_with("ingest."), "unexpected code: {}", e);
            prop_assert!(!e.message.is_empty());
            None
        }
        Err(other) => return Err(TestCaseError::fail(format!("not a located row error: {other}"))),
    };
    prop_assert!(!fail_log.exists(), "fail mode wrote rejects");

    let skip_log = dir.path().join("rejects.jsonl");
    let mut rejects = RejectLog::new(&skip_log);
    let skipped = read_all(&input, OnError::Skip, &mut rejects);
    let (records, stats) = match skipped {
        Ok(ok) => ok,
        Err(e) => return Err(TestCaseError::fail(format!("skip mode failed: {e}"))),
    };
    let logged = rejects.finish().unwrap();
    prop_assert_eq!(stats.rows_ok as usize, records.len());
    prop_assert_eq!(stats.rejected_total(), logged);
    if logged > 0 {
        let text = std::fs::read_to_string(&skip_log).unwrap();
        prop_assert_eq!(text.lines().count() as u64, logged);
        for line in text.lines() {
            let e: medforge_data::RowError = serde_json::from_str(line).expect("reject lines are RowErrors");
            prop_assert!(e.location.file.starts_with(dir.path()));
        }
    }
    if let Some(fail_records) = fail_records {
        // A clean file reads the same under both policies.
        prop_assert_eq!(logged, 0);
        prop_assert_eq!(fail_records, records);
    }
    Ok(())
}

fn src(name: &str) -> Option<FieldSource> {
    Some(FieldSource::field(name))
}

/// Mapping for the generic (non-medforge) Arrow/Parquet tables built below.
fn generic_fields() -> FieldMapping {
    FieldMapping {
        question: src("q"),
        answer: src("a"),
        options: src("opts"),
        metadata: Some(vec!["n".into(), "meta".into(), "dict".into()]),
        ..Default::default()
    }
}

fn generic_config(path: &Path) -> InputConfig {
    InputConfig { fields: generic_fields(), ..InputConfig::for_path(path, None) }
}

/// A small table of assorted column types that is not medforge's schema.
fn generic_batch() -> RecordBatch {
    let n = 6;
    let q: Vec<String> = (0..n).map(|i| format!("Question {i}?")).collect();
    let a: Vec<Option<String>> = (0..n).map(|i| (i != 3).then(|| format!("answer {i}"))).collect();
    let mut opts = ListBuilder::new(StringBuilder::new());
    for i in 0..n {
        for j in 0..(2 + i % 3) {
            opts.values().append_value(format!("option {j}"));
        }
        opts.append(true);
    }
    let mut dict = StringDictionaryBuilder::<Int32Type>::new();
    for i in 0..n {
        dict.append_value(["red", "green"][i % 2]);
    }
    let meta = StructArray::from(vec![
        (
            Arc::new(Field::new("x", DataType::Utf8, false)),
            Arc::new(StringArray::from((0..n).map(|i| format!("x{i}")).collect::<Vec<_>>())) as ArrayRef,
        ),
        (
            Arc::new(Field::new("y", DataType::Float64, false)),
            Arc::new(Float64Array::from((0..n).map(|i| i as f64 / 2.0).collect::<Vec<_>>())) as ArrayRef,
        ),
    ]);
    RecordBatch::try_from_iter([
        ("q", Arc::new(StringArray::from(q)) as ArrayRef),
        ("a", Arc::new(LargeStringArray::from(a)) as ArrayRef),
        ("n", Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef),
        ("opts", Arc::new(opts.finish()) as ArrayRef),
        ("meta", Arc::new(meta) as ArrayRef),
        ("dict", Arc::new(dict.finish()) as ArrayRef),
    ])
    .unwrap()
}

/// Canonical records (MedQA rows read through the preset) for medforge's own Parquet/Arrow outputs.
fn canonical_records() -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dev.jsonl");
    let lines: Vec<u8> =
        fixture("medqa/dev_5opt.jsonl").split(|&b| b == b'\n').take(4).collect::<Vec<_>>().join(&b'\n');
    std::fs::write(&p, lines).unwrap();
    let input = InputConfig::for_path(&p, Some("medqa")).resolve().unwrap();
    let (records, _) = read_all(&input, OnError::Fail, &mut RejectLog::new(dir.path().join("r.jsonl"))).unwrap();
    assert_eq!(records.len(), 4);
    records
}

/// Valid Parquet files: medforge's own output and a generic table.
fn parquet_fixtures() -> Arc<Vec<Vec<u8>>> {
    static CELL: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("own.parquet");
        write_all(&own, OutputFormat::Parquet, &canonical_records()).unwrap();
        let generic = dir.path().join("generic.parquet");
        let batch = generic_batch();
        let f = std::fs::File::create(&generic).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Arc::new(vec![std::fs::read(own).unwrap(), std::fs::read(generic).unwrap()])
    })
    .clone()
}

/// Valid Arrow IPC streams: the shard of a medforge HF folder and a generic table.
fn arrow_fixtures() -> Arc<Vec<Vec<u8>>> {
    static CELL: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let hf = dir.path().join("own_hf");
        write_all(&hf, OutputFormat::Hf, &canonical_records()).unwrap();
        let shard = std::fs::read_dir(&hf)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "arrow"))
            .expect("an .arrow shard");
        let batch = generic_batch();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.write(&batch.slice(1, 3)).unwrap();
        w.finish().unwrap();
        Arc::new(vec![std::fs::read(shard).unwrap(), w.into_inner().unwrap()])
    })
    .clone()
}

fn fixtures(rels: &[&str]) -> Arc<Vec<Vec<u8>>> {
    Arc::new(rels.iter().map(|r| fixture(r)).collect())
}

const NO_PREFIX: &[&[u8]] = &[b""];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jsonl_never_panics(
        bytes in file_bytes(fixtures(&["medqa/dev_5opt.jsonl", "medmcqa/medagents/medmcqa_test.jsonl"]), NO_PREFIX),
        tight in any::<bool>(),
    ) {
        check("dev.jsonl", &bytes, tight, &|p| InputConfig::for_path(p, Some("medqa")))?;
    }

    #[test]
    fn json_never_panics(
        bytes in file_bytes(fixtures(&["pubmedqa/ori_pqal.json", "chatdoctor/chatdoctor5k.json"]), NO_PREFIX),
        preset in prop::sample::select(vec!["pubmedqa", "chatdoctor"]),
        tight in any::<bool>(),
    ) {
        check("data.json", &bytes, tight, &|p| InputConfig::for_path(p, Some(preset)))?;
    }

    #[test]
    fn csv_never_panics(
        bytes in file_bytes(fixtures(&["kormedmcqa/doctor/fewshot.csv", "mmlu_medical/anatomy_test.csv"]), NO_PREFIX),
        preset in prop::sample::select(vec!["kormedmcqa", "mmlu-medical"]),
        tight in any::<bool>(),
    ) {
        check("anatomy_test.csv", &bytes, tight, &|p| InputConfig::for_path(p, Some(preset)))?;
    }

    #[test]
    fn tsv_never_panics(
        bytes in file_bytes(fixtures(&["patient_doctor_dialogues/dialogues_embededd.csv"]), NO_PREFIX),
        tight in any::<bool>(),
    ) {
        check("dialogues.tsv", &bytes, tight, &|p| InputConfig::for_path(p, Some("dialogues-tsv")))?;
    }

    #[test]
    fn medquad_xml_never_panics(
        bytes in file_bytes(
            fixtures(&[
                "medquad/10_MPlus_ADAM_QA/0000001.xml",
                "medquad/6_NINDS_QA/0000007.xml",
                "medquad/9_CDC_QA/0000397.xml",
            ]),
            &[b"", b"<Document>", b"<?xml version=\"1.0\"?>\n<Document id=\"1\"><QAPairs><QAPair>"],
        ),
        tight in any::<bool>(),
    ) {
        check("0000001.xml", &bytes, tight, &|p| InputConfig::for_path(p, Some("medquad")))?;
    }

    #[test]
    fn parquet_bytes_never_panic(
        bytes in file_bytes(parquet_fixtures(), &[b"", b"PAR1"]),
        own in any::<bool>(),
    ) {
        // Either mapping can meet either file: a medforge table under a custom mapping is read as fields.
        if own {
            check("train.parquet", &bytes, false, &|p| InputConfig::for_path(p, Some("medforge")))?;
        } else {
            check("train.parquet", &bytes, false, &generic_config)?;
        }
    }

    #[test]
    fn arrow_stream_bytes_never_panic(
        bytes in file_bytes(arrow_fixtures(), &[b"", b"\xff\xff\xff\xff", b"ARROW1\0\0"]),
        own in any::<bool>(),
    ) {
        if own {
            check("data-00000-of-00001.arrow", &bytes, false, &|p| InputConfig::for_path(p, Some("medforge")))?;
        } else {
            check("data-00000-of-00001.arrow", &bytes, false, &generic_config)?;
        }
    }
}

/// The fixtures themselves read cleanly, so the mutations start from valid files.
#[test]
fn unmutated_fixtures_read_cleanly() {
    type Config<'a> = &'a dyn Fn(&Path) -> InputConfig;
    let cases: Vec<(&str, Vec<u8>, Config)> = vec![
        ("dev.jsonl", fixture("medqa/dev_5opt.jsonl"), &|p| InputConfig::for_path(p, Some("medqa"))),
        ("data.json", fixture("pubmedqa/ori_pqal.json"), &|p| InputConfig::for_path(p, Some("pubmedqa"))),
        ("train.csv", fixture("kormedmcqa/doctor/fewshot.csv"), &|p| InputConfig::for_path(p, Some("kormedmcqa"))),
        ("d.tsv", fixture("patient_doctor_dialogues/dialogues_embededd.csv"), &|p| {
            InputConfig::for_path(p, Some("dialogues-tsv"))
        }),
        ("0000001.xml", fixture("medquad/9_CDC_QA/0000397.xml"), &|p| InputConfig::for_path(p, Some("medquad"))),
        ("own.parquet", parquet_fixtures()[0].clone(), &|p| InputConfig::for_path(p, Some("medforge"))),
        ("generic.parquet", parquet_fixtures()[1].clone(), &generic_config),
        ("own.arrow", arrow_fixtures()[0].clone(), &|p| InputConfig::for_path(p, Some("medforge"))),
        ("generic.arrow", arrow_fixtures()[1].clone(), &generic_config),
    ];
    for (name, bytes, cfg) in cases {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).unwrap();
        let input = cfg(&p).resolve().unwrap();
        let (records, stats) = read_all(&input, OnError::Fail, &mut RejectLog::new(dir.path().join("r.jsonl")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!records.is_empty(), "{name}");
        assert_eq!(stats.rejected_total(), 0, "{name}");
        if name.starts_with("generic") {
            assert_eq!(records.len(), if name.ends_with("arrow") { 9 } else { 6 }, "{name}");
            assert_eq!(records[1].options.len(), 3, "{name}");
            assert_eq!(records[0].metadata["meta"]["x"], "x0", "{name}");
        }
    }
}
