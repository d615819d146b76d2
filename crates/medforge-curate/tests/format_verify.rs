//! Training formats end to end: records → rows through every built-in template → `train.jsonl` +
//! `train_dataset/` + `format.json` → verify; and every corruption the verifier must catch.

use medforge_curate::format::{format_record, render_training, FormatConfig, Formatter, Rendered};
use medforge_curate::verify::{code, verify, verify_rows, VerifyReport};
use medforge_data::formatted::{write_set, FormatSpec, FormattedRow, Markers, TrainingType, WriteSummary};
use medforge_data::{McqOption, Record, RecordKind};
use medforge_text::chat::{ChatTemplate, Message};

/// Write `rows` as the train split of a formatted folder.
fn write_formatted(
    dir: &std::path::Path,
    rows: &[FormattedRow],
    spec: &FormatSpec,
) -> medforge_data::Result<WriteSummary> {
    write_set(dir, &std::collections::BTreeMap::from([("train".to_string(), rows.to_vec())]), spec)
}

fn options(r: &mut Record, texts: &[&str]) {
    r.options = texts
        .iter()
        .enumerate()
        .map(|(i, t)| McqOption { letter: ((b'A' + i as u8) as char).to_string(), text: t.to_string() })
        .collect();
}

fn records() -> Vec<Record> {
    let mut out = Vec::new();

    let mut r = Record::new("mcq-reason", "t", RecordKind::Mcq, "Which drug lowers blood glucose?");
    options(&mut r, &["Aspirin", "Insulin", "Heparin", "Warfarin"]);
    r.answer_letter = Some("B".into());
    r.answer = Some("Insulin".into());
    r.reasoning = Some("Insulin promotes glucose uptake.".into());
    out.push(r);

    let mut r = Record::new("mcq-plain", "t", RecordKind::Mcq, "다음 중 비타민 K 길항제는?");
    options(&mut r, &["헤파린", "와파린", "아스피린"]);
    r.answer_letter = Some("B".into());
    out.push(r);

    let mut r = Record::new("pubmed", "pubmedqa", RecordKind::Mcq, "Does X cause Y?");
    r.context = Some("Background: a study of 100 patients.".into());
    options(&mut r, &["yes", "no", "maybe"]);
    r.answer_letter = Some("A".into());
    out.push(r);

    let mut r = Record::new("open-short", "t", RecordKind::OpenQa, "What is the normal fasting glucose upper limit?");
    r.answer = Some("100 mg/dL".into());
    r.reasoning = Some("Fasting plasma glucose below 100 mg/dL is normal.".into());
    out.push(r);

    let mut r = Record::new("open-long", "huatuogpt-o1", RecordKind::OpenQa, "How is type 2 diabetes managed?");
    r.answer = Some("Lifestyle and metformin".into());
    r.response = Some(
        "Management starts with lifestyle changes (diet, exercise, weight loss); metformin is the usual first drug, \
         with others added to reach the HbA1c target."
            .into(),
    );
    r.reasoning = Some("<think>First-line therapy is metformin.</think>".into());
    out.push(r);

    let mut r = Record::new("open-plain", "chatdoctor", RecordKind::Dialogue, "I have a headache.");
    r.answer = Some("Rest and drink water; see a doctor if it persists.".into());
    out.push(r);

    let mut r = Record::new("pref", "t", RecordKind::Preference, "Can I take ibuprofen with warfarin?");
    r.chosen = Some("Avoid it: both raise bleeding risk. Ask your doctor.".into());
    r.rejected = Some("Yes, that is fine.".into());
    out.push(r);

    out.push(Record::new("no-answer", "t", RecordKind::OpenQa, "Unanswered?"));
    out
}

fn config(template: &str) -> FormatConfig {
    FormatConfig { template: template.into(), ..FormatConfig::default() }
}

fn format_set(cfg: &FormatConfig) -> (Formatter, Vec<FormattedRow>) {
    let f = Formatter::new(cfg).unwrap();
    let out = f.format_all(&records()).unwrap();
    assert_eq!(out.stats.records, 8);
    assert_eq!(out.stats.skipped.get("format.no_answer"), Some(&1));
    (f, out.rows)
}

fn by_id<'a>(rows: &'a [FormattedRow], id: &str) -> &'a FormattedRow {
    rows.iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no row {id}"))
}

#[test]
fn routing_over_a_mixed_set() {
    let (_, rows) = format_set(&config("chatml"));
    let types: Vec<(&str, TrainingType)> = rows.iter().map(|r| (r.id.as_str(), r.training_type)).collect();
    assert_eq!(
        types,
        vec![
            ("mcq-reason", TrainingType::LetterReasoning),
            ("mcq-plain", TrainingType::Letter),
            ("pubmed", TrainingType::Letter),
            ("open-short", TrainingType::LetterReasoning),
            ("open-long", TrainingType::TextReasoning),
            ("open-plain", TrainingType::Text),
            ("pref", TrainingType::Dpo),
        ]
    );
}

#[test]
fn chatml_rows_exact() {
    let (_, rows) = format_set(&config("chatml"));
    let r = by_id(&rows, "mcq-reason");
    let sys = FormatConfig::default()
        .system_prompts
        .letter_reasoning
        .replace("{open}", "<think>")
        .replace("{close}", "</think>");
    assert!(sys.contains("<think> 태그와 </think> 태그 사이에"), "{sys}");
    assert_eq!(
        r.prompt,
        format!(
            "<|im_start|>system\n{sys}<|im_end|>\n<|im_start|>user\nWhich drug lowers blood glucose?\n\n\
             A) Aspirin\nB) Insulin\nC) Heparin\nD) Warfarin<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    assert_eq!(r.completion, "<think>\nInsulin promotes glucose uptake.\n</think>\n\nB<|im_end|>");
    assert_eq!(r.text, format!("{}{}", r.prompt, r.completion));
    assert_eq!(r.messages.len(), 3);
    assert_eq!(r.messages[2], Message::assistant("<think>\nInsulin promotes glucose uptake.\n</think>\n\nB"));

    // Context before the question; type 3 is the bare letter.
    let r = by_id(&rows, "pubmed");
    assert!(r.messages[1].content.starts_with("Background: a study of 100 patients.\n\nDoes X cause Y?\n\nA) yes\n"));
    assert_eq!(r.completion, "A<|im_end|>");

    // An outer marker pair already in the reasoning is not doubled; the long response is the answer.
    let r = by_id(&rows, "open-long");
    assert!(r.completion.starts_with("<think>\nFirst-line therapy is metformin.\n</think>\n\nManagement starts"));
    assert!(!r.messages[1].content.contains("A)"));

    let r = by_id(&rows, "open-short");
    assert_eq!(
        r.messages[2].content,
        "<think>\nFasting plasma glucose below 100 mg/dL is normal.\n</think>\n\n100 mg/dL"
    );

    let r = by_id(&rows, "pref");
    assert_eq!(r.chosen.as_deref(), Some("Avoid it: both raise bleeding risk. Ask your doctor.<|im_end|>"));
    assert_eq!(r.rejected.as_deref(), Some("Yes, that is fine.<|im_end|>"));
    assert_eq!(r.completion, r.chosen.clone().unwrap());
    assert!(r.prompt.ends_with("<|im_start|>assistant\n"));
}

#[test]
fn every_builtin_template_formats_and_verifies_clean() {
    for name in ["llama3", "gemma", "chatml", "qwen", "mistral"] {
        let dir = tempfile::tempdir().unwrap();
        let (f, rows) = format_set(&config(name));
        let eos = ChatTemplate::from_name(name).unwrap().eos_token().to_string();
        for r in &rows {
            assert!(r.completion.ends_with(&eos), "{name} {}: {:?}", r.id, r.completion);
            assert_eq!(r.text, format!("{}{}", r.prompt, r.completion));
        }
        let summary = write_formatted(dir.path(), &rows, f.spec()).unwrap();
        assert_eq!(summary.rows["train"], rows.len() as u64);
        let report = verify(dir.path());
        assert!(report.is_ok(), "{name}: {report}");
        assert_eq!(report.rows, 7);
        assert_eq!(report.types.get("letter"), Some(&2));
        assert_eq!(report.types.get("dpo"), Some(&1));
    }
}

#[test]
fn builtin_specific_completions() {
    let (_, rows) = format_set(&config("llama3"));
    let r = by_id(&rows, "mcq-plain");
    assert!(r.prompt.starts_with("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"));
    assert!(r.prompt.ends_with("C) 아스피린<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"));
    assert_eq!(r.completion, "B<|eot_id|>");

    let (_, rows) = format_set(&config("gemma"));
    let r = by_id(&rows, "mcq-plain");
    assert!(r.prompt.starts_with("<bos><start_of_turn>user\n당신은"));
    assert!(r.prompt.ends_with("C) 아스피린<end_of_turn>\n<start_of_turn>model\n"));
    assert_eq!(r.completion, "B<end_of_turn>");

    let (_, rows) = format_set(&config("mistral"));
    let r = by_id(&rows, "mcq-plain");
    assert!(r.prompt.starts_with("<s>[INST] 당신은"));
    assert!(r.prompt.ends_with("C) 아스피린 [/INST]"));
    assert_eq!(r.completion, "B</s>");
}

#[test]
fn markers_types_variants_and_format_record() {
    let mut cfg = config("chatml");
    cfg.reasoning_markers = Markers::R;
    cfg.types = vec![TrainingType::Letter, TrainingType::LetterReasoning, TrainingType::Text];
    cfg.plain_variants = true;
    let recs = records();
    let rows = format_record(&recs[0], &cfg).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.training_type).collect::<Vec<_>>(),
        vec![TrainingType::LetterReasoning, TrainingType::Letter]
    );
    assert_eq!(rows[0].messages[2].content, "<R>\nInsulin promotes glucose uptake.\n<R/>\n\nB");
    assert!(rows[0].messages[0].content.contains("<R> 태그와 <R/> 태그"));
    assert_eq!(rows[1].completion, "B<|im_end|>");
    // Type 2 disabled: the long open answer falls back to type 1; DPO disabled: skipped.
    let rows = format_record(&recs[4], &cfg).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].training_type, TrainingType::Text);
    assert!(rows[0].completion.starts_with("Management starts"));
    assert!(format_record(&recs[6], &cfg).unwrap().is_empty());
    let f = Formatter::new(&cfg).unwrap();
    assert_eq!(f.format_or_skip(&recs[6]).unwrap(), Err("format.type_disabled"));

    let mut bad = config("chatml");
    bad.reasoning_markers = Markers::Custom { open: String::new(), close: "</x>".into() };
    assert!(Formatter::new(&bad).unwrap_err().to_string().contains("markers must not be empty"));

    // An empty system prompt: no system message.
    let mut cfg = config("chatml");
    cfg.system_prompts.letter = String::new();
    let rows = format_record(&recs[1], &cfg).unwrap();
    assert_eq!(rows[0].messages[0].role, "user");
    assert!(rows[0].prompt.starts_with("<|im_start|>user\n"));

    // Reasoning with stray markers inside is skipped, not written unbalanced.
    let mut r = recs[0].clone();
    r.reasoning = Some("a </think> b".into());
    let f = Formatter::new(&config("chatml")).unwrap();
    assert_eq!(f.format_or_skip(&r).unwrap(), Err("format.markers_in_content"));
}

#[test]
fn tokenizer_config_template_and_jinja_spec() {
    let dir = tempfile::tempdir().unwrap();
    let tc = dir.path().join("tokenizer_config.json");
    let smollm2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
    std::fs::write(
        &tc,
        serde_json::json!({"chat_template": smollm2, "eos_token": {"content": "<|im_end|>"}, "bos_token": "<|im_start|>"})
            .to_string(),
    )
    .unwrap();
    let (f, rows) = format_set(&config(tc.to_str().unwrap()));
    let (_, builtin) = format_set(&config("chatml"));
    assert_eq!(rows, builtin);
    let out = dir.path().join("out");
    write_formatted(&out, &rows, f.spec()).unwrap();
    // The spec carries the template source: verification needs no tokenizer_config.json.
    std::fs::remove_file(&tc).unwrap();
    let report = verify(&out);
    assert!(report.is_ok(), "{report}");

    // `jinja:` with an EOS override: EOS is appended where the template leaves it out.
    let mut cfg = config("jinja:{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}");
    cfg.eos_token = Some("<END>".into());
    let (f, rows) = format_set(&cfg);
    assert!(rows.iter().all(|r| r.completion.ends_with("\n<END>")));
    assert!(verify_rows(&rows, f.spec()).is_ok());
}

#[test]
fn hf_folder_layout_and_arrow_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (f, rows) = format_set(&config("llama3"));
    write_formatted(dir.path(), &rows, f.spec()).unwrap();
    // Rewriting replaces the folder atomically and leaves no temporaries behind.
    write_formatted(dir.path(), &rows, f.spec()).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["format.json", "train.jsonl", "train_dataset"]);
    let hf = dir.path().join("train_dataset");
    let mut names: Vec<String> =
        std::fs::read_dir(&hf).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]);

    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(hf.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["_data_files"], serde_json::json!([{"filename": "data-00000-of-00001.arrow"}]));
    for key in ["_format_columns", "_format_type", "_split"] {
        assert!(state[key].is_null(), "{key}");
    }
    assert_eq!(state["_format_kwargs"], serde_json::json!({}));
    assert_eq!(state["_output_all_columns"], serde_json::json!(false));
    assert!(state["_fingerprint"].as_str().is_some_and(|s| s.len() == 16));

    let file = std::fs::File::open(hf.join("data-00000-of-00001.arrow")).unwrap();
    let reader = arrow_ipc::reader::StreamReader::try_new(file, None).unwrap();
    let schema = reader.schema();
    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(cols, vec!["id", "training_type", "messages", "prompt", "completion", "text", "chosen", "rejected"]);
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, rows.len());
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let b = &batches[0];
    let texts = b.column(5).as_string::<i32>();
    assert_eq!(texts.value(0), rows[0].text);
    let messages = b.column(2).as_list::<i32>();
    let first = messages.value(0);
    let first = first.as_struct();
    assert_eq!(first.column(0).as_string::<i32>().value(2), "assistant");
    assert_eq!(first.column(1).as_string::<i32>().value(2), rows[0].messages[2].content);
    let chosen = b.column(6).as_string::<i32>();
    assert!(chosen.is_null(0));
    assert_eq!(chosen.value(rows.len() - 1), rows.last().unwrap().chosen.as_deref().unwrap());

    // JSONL rows read back equal.
    let text = std::fs::read_to_string(dir.path().join("train.jsonl")).unwrap();
    let back: Vec<FormattedRow> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, rows);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["training_type"], "letter_reasoning");
    assert!(first["chosen"].is_null());
}

// ---------------------------------------------------------------------------------------------------------------
// Corruptions

fn spec_and_rows() -> (FormatSpec, Vec<FormattedRow>) {
    let (f, rows) = format_set(&config("chatml"));
    (f.spec().clone(), rows)
}

/// Change a row's assistant content and re-render it consistently, so only the semantic check can object.
fn set_answer(spec: &FormatSpec, row: &mut FormattedRow, content: &str) {
    row.messages.last_mut().unwrap().content = content.to_string();
    let t = spec.chat_template().compile().unwrap();
    let Rendered { prompt, completion, text } = render_training(&t, &row.messages).unwrap();
    row.prompt = prompt;
    row.completion = completion;
    row.text = text;
}

fn only(report: &VerifyReport, code: &str) {
    assert!(report.count(code) > 0, "expected {code}: {report}");
    assert_eq!(report.errors.len(), 1, "expected only {code}: {report}");
    let e = &report.errors[code];
    assert!(!e.examples.is_empty() && e.examples.len() <= 3);
}

fn idx(rows: &[FormattedRow], id: &str) -> usize {
    rows.iter().position(|r| r.id == id).unwrap()
}

#[test]
fn clean_set_passes() {
    let (spec, rows) = spec_and_rows();
    let report = verify_rows(&rows, &spec);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.error_count(), 0);
}

#[test]
fn detects_unbalanced_markers() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "mcq-reason");
    set_answer(&spec, &mut rows[i], "<think>\nno close\n\nB");
    only(&verify_rows(&rows, &spec), code::MARKERS_UNBALANCED);
    set_answer(&spec, &mut rows[i], "<think>a</think><think>b\n\nB");
    only(&verify_rows(&rows, &spec), code::MARKERS_UNBALANCED);
    set_answer(&spec, &mut rows[i], "</think>a<think>\n\nB");
    only(&verify_rows(&rows, &spec), code::MARKERS_UNBALANCED);
    // A reasoning type without any reasoning.
    set_answer(&spec, &mut rows[i], "B");
    only(&verify_rows(&rows, &spec), code::REASONING_MISSING);
}

#[test]
fn detects_letter_not_in_options() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "mcq-plain");
    set_answer(&spec, &mut rows[i], "E");
    let report = verify_rows(&rows, &spec);
    only(&report, code::LETTER_NOT_IN_OPTIONS);
    assert_eq!(report.errors[code::LETTER_NOT_IN_OPTIONS].examples[0].id, "mcq-plain");
    let (_, mut rows) = spec_and_rows();
    let i = idx(&rows, "mcq-reason");
    set_answer(&spec, &mut rows[i], "<think>\nx\n</think>\n\nInsulin");
    only(&verify_rows(&rows, &spec), code::LETTER_NOT_IN_OPTIONS);
    // A short open answer in type 4 is fine, a bare letter with no options is not.
    let (_, mut rows) = spec_and_rows();
    let i = idx(&rows, "open-short");
    set_answer(&spec, &mut rows[i], "<think>\nx\n</think>\n\nC");
    only(&verify_rows(&rows, &spec), code::LETTER_NOT_IN_OPTIONS);
}

#[test]
fn detects_markers_in_plain_types() {
    for id in ["open-plain", "mcq-plain"] {
        let (spec, mut rows) = spec_and_rows();
        let i = idx(&rows, id);
        let answer = rows[i].messages[2].content.clone();
        set_answer(&spec, &mut rows[i], &format!("<think>\nhmm\n</think>\n\n{answer}"));
        only(&verify_rows(&rows, &spec), code::MARKERS_IN_PLAIN_TYPE);
    }
}

#[test]
fn detects_missing_eos() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "open-plain");
    let row = &mut rows[i];
    for s in [&mut row.completion, &mut row.text] {
        *s = s.strip_suffix("<|im_end|>").unwrap().to_string();
    }
    let report = verify_rows(&rows, &spec);
    assert!(report.count(code::MISSING_EOS) == 1, "{report}");
    // The DPO rejected completion too.
    let (_, mut rows) = spec_and_rows();
    let i = idx(&rows, "pref");
    rows[i].rejected = Some("Yes, that is fine.".into());
    only(&verify_rows(&rows, &spec), code::MISSING_EOS);
}

#[test]
fn detects_template_mismatch() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "open-plain");
    rows[i].messages[1].content.push_str(" (edited)");
    let report = verify_rows(&rows, &spec);
    only(&report, code::TEMPLATE_MISMATCH);
    assert!(report.errors[code::TEMPLATE_MISMATCH].examples[0].excerpt.contains("differs at byte"));
    // Rendered with another template.
    let (_, llama) = format_set(&config("llama3"));
    let report = verify_rows(&llama[..1], &spec);
    assert_eq!(report.count(code::TEMPLATE_MISMATCH), 1, "{report}");
    assert_eq!(report.count(code::MISSING_EOS), 1, "{report}");
}

#[test]
fn detects_text_not_prompt_plus_completion() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "mcq-plain");
    rows[i].text = rows[i].text.replace("<|im_start|>assistant\n", "<|im_start|>assistant\n\n");
    let report = verify_rows(&rows, &spec);
    assert_eq!(report.count(code::TEXT_NOT_PROMPT_PLUS_COMPLETION), 1, "{report}");
    assert_eq!(report.count(code::TEMPLATE_MISMATCH), 1, "{report}");
    assert_eq!(report.errors.len(), 2);
}

#[test]
fn detects_dpo_and_row_problems() {
    let (spec, mut rows) = spec_and_rows();
    let i = idx(&rows, "pref");
    rows[i].rejected = None;
    only(&verify_rows(&rows, &spec), code::DPO_PAIR);

    let (_, mut rows) = spec_and_rows();
    rows[0].messages.pop();
    only(&verify_rows(&rows, &spec), code::BAD_MESSAGES);
}

#[test]
fn verify_dir_reports_bad_lines_missing_files_and_caps_examples() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(verify(dir.path()).count(code::MISSING_FILE), 1);

    let (f, mut rows) = format_set(&config("gemma"));
    // Five rows with an unknown letter: counted five times, three examples kept.
    let t = f.spec().chat_template().compile().unwrap();
    let mut bad = Vec::new();
    for n in 0..5 {
        let mut r = rows[1].clone();
        r.id = format!("bad-{n}");
        r.messages.last_mut().unwrap().content = "Z".into();
        let Rendered { prompt, completion, text } = render_training(&t, &r.messages).unwrap();
        (r.prompt, r.completion, r.text) = (prompt, completion, text);
        bad.push(r);
    }
    rows.extend(bad);
    write_formatted(dir.path(), &rows, f.spec()).unwrap();
    let jsonl = dir.path().join("train.jsonl");
    let mut text = std::fs::read_to_string(&jsonl).unwrap();
    text.push_str("{\"id\": \"truncated\", \"training_type\n");
    std::fs::write(&jsonl, text).unwrap();

    let report = verify(dir.path());
    assert_eq!(report.rows, 13);
    assert_eq!(report.count(code::LETTER_NOT_IN_OPTIONS), 5);
    let ex = &report.errors[code::LETTER_NOT_IN_OPTIONS].examples;
    assert_eq!(ex.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["bad-0", "bad-1", "bad-2"]);
    assert_eq!(report.count(code::BAD_ROW), 1);
    assert_eq!(report.errors[code::BAD_ROW].examples[0].id, "train.jsonl line 13");
    assert_eq!(report.errors.len(), 2, "{report}");
    let shown = report.to_string();
    assert!(shown.contains("verify.letter_not_in_options: 5"), "{shown}");

    std::fs::write(dir.path().join("format.json"), "{").unwrap();
    assert_eq!(verify(dir.path()).count(code::BAD_SPEC), 1);
}

#[test]
fn a_template_that_rewrites_the_answer_is_refused() {
    // DeepSeek-R1-style: the template drops everything up to `</think>` from assistant turns.
    let cfg = config(
        "jinja:{% for m in messages %}{% set c = m.content %}{% if '</think>' in c %}\
         {% set c = c.split('</think>')[-1] %}{% endif %}[{{ m.role }}]{{ c }}{% endfor %}",
    );
    let f = Formatter::new(&cfg).unwrap();
    let err = f.format(&records()[0]).unwrap_err().to_string();
    assert!(err.contains("mcq-reason") && err.contains("does not contain its content"), "{err}");
    // Rows without reasoning are fine.
    assert_eq!(f.format(&records()[1]).unwrap().len(), 1);
}
