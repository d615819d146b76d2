use super::*;
use medforge_data::RecordKind;

fn fixture() -> Taxonomy {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/specialty_taxonomy/med_division.json");
    Taxonomy::load(&p).unwrap()
}

fn labels(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rec(i: usize, division: Option<&str>) -> Record {
    let mut r =
        Record::new(format!("r{i}"), if i.is_multiple_of(2) { "medqa" } else { "kormedmcqa" }, RecordKind::Mcq, "q");
    r.division = division.map(str::to_string);
    r
}

#[test]
fn loads_the_medgemma_tree() {
    let t = fixture();
    assert_eq!(t.len(), 268);
    assert_eq!(t.top_level().count(), 10);
    assert_eq!(t.max_level(), 3);
    assert_eq!(t.version.as_deref(), Some("1.0"));
    let n = t.get("1.2.3").unwrap();
    assert_eq!(n.parent.as_deref(), Some("1.2"));
    assert_eq!(n.level, 3);
    assert_eq!(t.get("1").unwrap().name, "Cardiovascular Medicine");
    assert!(t.get("1").unwrap().children.contains(&"1.2".to_string()));
    assert_eq!(t.ancestor_at("1.2.3", 1).unwrap().id, "1");
    assert_eq!(t.ancestor_at("1.2.3", 2).unwrap().id, "1.2");
    assert_eq!(t.ancestor_at("1", 2).unwrap().id, "1");
}

#[test]
fn name_lookup_is_trimmed_case_insensitive_and_knows_ambiguity() {
    let t = fixture();
    assert_eq!(t.by_name("  neurology ").unwrap().id, "7");
    assert_eq!(t.by_name("GASTROENTEROLOGY   AND hepatology").unwrap().id, "3");
    // Trailing parenthetical may be omitted.
    assert_eq!(t.by_name("Infectious Diseases").unwrap().id, "8");
    assert_eq!(t.by_name("infectious diseases (cross-cutting)").unwrap().id, "8");
    // "Diagnostics" sits under seven divisions.
    assert!(t.by_name("Diagnostics").is_none());
    assert_eq!(t.nodes_named("diagnostics").len(), 7);
    assert_eq!(t.by_name("Core Foundations").unwrap().id, "1.1");
}

#[test]
fn korean_names_resolve_when_present() {
    let v = serde_json::json!({"title": "t", "version": 2, "nodes": [
        {"id": "1", "name": "Cardiology", "name_ko": "순환기내과", "children": [
            {"id": "1.1", "name": "Arrhythmia", "name_ko": "부정맥"}]},
        {"id": "2", "name": "Neurology"}]});
    let t = Taxonomy::from_json(v, "inline").unwrap();
    assert_eq!(t.version.as_deref(), Some("2"));
    assert_eq!(t.by_name("부정맥").unwrap().id, "1.1");
    let fix = fix_labels(&t, &labels(&["순환기내과"]));
    assert_eq!(fix.labels, vec!["1"]);
    assert_eq!(fix.mapped, vec![("순환기내과".to_string(), "1".to_string())]);
}

#[test]
fn fix_labels_removes_maps_and_keeps() {
    let t = fixture();
    let f = fix_labels(&t, &labels(&[" 1.9.9", "3", "1.2", "Neurology", "11", "1.2", "03", "free text", ""]));
    assert_eq!(f.labels, vec!["3", "1.2", "7"]);
    assert_eq!(f.primary, "3");
    assert_eq!(f.removed, labels(&[" 1.9.9", "11", "free text"]));
    assert_eq!(f.mapped, vec![("Neurology".to_string(), "7".to_string()), ("03".to_string(), "3".to_string())]);
    assert!(!f.unknown);
}

#[test]
fn fix_labels_numeric_forms_and_id_name_labels() {
    let t = fixture();
    for raw in ["3.0", "3.", "(3)", "#3", " 3 "] {
        assert_eq!(fix_labels(&t, &labels(&[raw])).labels, vec!["3"], "{raw}");
    }
    assert_eq!(fix_labels(&t, &labels(&["1.02"])).labels, vec!["1.2"]);
    assert_eq!(fix_labels(&t, &labels(&["3. Gastroenterology and Hepatology"])).labels, vec!["3"]);
    assert_eq!(fix_labels(&t, &labels(&["1.4.1 Ischemic heart disease"])).labels, vec!["1.4.1"]);
    // The name contradicts the id: neither can be trusted.
    let f = fix_labels(&t, &labels(&["3 Neurology"]));
    assert!(f.unknown);
    assert_eq!(f.removed, labels(&["3 Neurology"]));
}

#[test]
fn ambiguous_names_use_the_rows_other_labels() {
    let t = fixture();
    let f = fix_labels(&t, &labels(&["Anatomy", "2"]));
    assert_eq!(f.labels, vec!["2.1.1", "2"]);
    assert_eq!(t.get("2.1.1").unwrap().name, "Anatomy");
    let alone = fix_labels(&t, &labels(&["Anatomy"]));
    assert!(alone.unknown);
    assert_eq!(alone.removed, labels(&["Anatomy"]));
}

#[test]
fn empty_labels_become_unknown() {
    let t = fixture();
    for raw in [labels(&[]), labels(&["", "  "]), labels(&["UNKNOWN"]), labels(&["99"])] {
        let f = fix_labels(&t, &raw);
        assert_eq!(f.labels, vec![UNKNOWN]);
        assert_eq!(f.primary, UNKNOWN);
        assert!(f.unknown);
    }
}

#[test]
fn flat_lists_json_strings_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let objs = dir.path().join("specialties.json");
    std::fs::write(&objs, r#"[{"name": "Dermatology", "description": "skin"}, {"name": "Cardiology"}]"#).unwrap();
    let strs = dir.path().join("list.json");
    std::fs::write(&strs, r#"["Dermatology", "Cardiology"]"#).unwrap();
    let txt = dir.path().join("list.txt");
    std::fs::write(&txt, "# specialties\nDermatology\n\n  Cardiology  \n").unwrap();
    for p in [&objs, &strs, &txt] {
        let t = Taxonomy::load(p).unwrap();
        assert_eq!(t.len(), 2, "{}", p.display());
        assert_eq!(t.get("2").unwrap().name, "Cardiology");
        assert_eq!(t.by_name("cardiology").unwrap().id, "2");
        assert_eq!(fix_labels(&t, &labels(&["2", "dermatology"])).labels, vec!["2", "1"]);
    }
    assert_eq!(Taxonomy::load(&objs).unwrap().get("1").unwrap().description.as_deref(), Some("skin"));
}

#[test]
fn the_shared_specialty_list_loads() {
    let rel = "specialty_taxonomy/nyimul_medical_specialty_search/specialties.json";
    let Some(p) = medforge_testkit::shared(rel) else { return };
    let t = Taxonomy::load(&p).unwrap();
    assert_eq!(t.len(), 40);
    assert_eq!(t.by_name("cardiology").unwrap().id, "2");
}

#[test]
fn bad_taxonomies_are_errors() {
    let dup = serde_json::json!({"nodes": [{"id": "1", "name": "a"}, {"id": "1", "name": "b"}]});
    assert!(Taxonomy::from_json(dup, "x").unwrap_err().to_string().contains("duplicate"));
    assert!(Taxonomy::from_json(serde_json::json!([]), "x").is_err());
    assert!(Taxonomy::from_json(serde_json::json!({"nodes": [{"id": "", "name": "a"}]}), "x").is_err());
    assert!(Taxonomy::from_json(serde_json::json!([{"description": "no name"}]), "x").is_err());
    assert!(Taxonomy::from_json(serde_json::json!(3), "x").is_err());
}

#[test]
fn distribution_rolls_up_and_sorts() {
    let t = fixture();
    let mut rows = vec![rec(0, Some("1.2.3")), rec(1, Some("1")), rec(2, Some("7.1")), rec(3, None), rec(4, None)];
    rows[3].specialty = Some("Nephrology".into()); // falls back to the specialty label
    let d = distribution(&rows, &t, 1);
    assert_eq!(d.len(), 11, "10 divisions + UNKNOWN");
    assert_eq!((d[0].id.as_str(), d[0].count), ("1", 2));
    assert_eq!(d[0].name, "Cardiovascular Medicine");
    assert!((d[0].percent - 40.0).abs() < 1e-9);
    let ids: Vec<&str> = d.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(&ids[1..5], &["4", "7", UNKNOWN, "2"]);
    assert_eq!(d.last().unwrap().id, "10", "ties in numeric id order");
    assert!((d.iter().map(|c| c.percent).sum::<f64>() - 100.0).abs() < 1e-9);

    let d2 = distribution(&rows, &t, 2);
    assert_eq!(d2.iter().find(|c| c.id == "1.2").unwrap().count, 1);
    assert_eq!(d2.iter().find(|c| c.id == "1").unwrap().count, 1, "a level-1 label stays at level 1");
}

#[test]
fn organize_writes_folders_index_and_is_deterministic() {
    let t = fixture();
    let mut rows = Vec::new();
    for i in 0..40 {
        rows.push(rec(i, Some(if i % 4 == 0 { "1.4.2" } else { "7" })));
    }
    rows.push(rec(40, Some("3")));
    rows.push(rec(41, None));
    let opts = OrganizeOptions { min_samples: 2, validation_fraction: 0.25, seed: 9, level: 1 };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let idx = organize_divisions(&rows, &t, a.path(), &opts).unwrap();
    organize_divisions(&rows, &t, b.path(), &opts).unwrap();

    assert_eq!(
        idx.divisions.iter().map(|d| d.folder.as_str()).collect::<Vec<_>>(),
        ["1_cardiovascular_medicine", "7_neurology"]
    );
    assert_eq!(idx.skipped.iter().map(|s| (s.id.as_str(), s.count)).collect::<Vec<_>>(), [("3", 1), (UNKNOWN, 1)]);
    let neuro = &idx.divisions[1];
    assert_eq!((neuro.total, neuro.train, neuro.validation), (30, 22, 8));

    for f in
        ["division_index.json", "7_neurology/train.jsonl", "7_neurology/validation.jsonl", "7_neurology/metadata.json"]
    {
        let x = std::fs::read(a.path().join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.path().join(f)).unwrap(), "{f} differs between runs");
    }
    assert!(!a.path().join("3_gastroenterology_and_hepatology").exists());

    // Lines are canonical records, in input order, and the two files partition the division.
    let read = |f: &str| -> Vec<Record> {
        std::fs::read_to_string(a.path().join(f)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let train = read("7_neurology/train.jsonl");
    let val = read("7_neurology/validation.jsonl");
    assert_eq!(train.len() + val.len(), 30);
    let pos = |r: &Record| r.id[1..].parse::<usize>().unwrap();
    assert!(train.windows(2).all(|w| pos(&w[0]) < pos(&w[1])));
    let mut all: Vec<String> = train.iter().chain(&val).map(|r| r.id.clone()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30);

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.path().join("7_neurology/metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["id"], "7");
    assert_eq!(meta["sources"]["medqa"].as_u64().unwrap() + meta["sources"]["kormedmcqa"].as_u64().unwrap(), 30);

    // A different seed draws a different validation set.
    let c = tempfile::tempdir().unwrap();
    organize_divisions(&rows, &t, c.path(), &OrganizeOptions { seed: 10, ..opts.clone() }).unwrap();
    assert_ne!(
        std::fs::read(a.path().join("7_neurology/validation.jsonl")).unwrap(),
        std::fs::read(c.path().join("7_neurology/validation.jsonl")).unwrap()
    );
}

#[test]
fn organize_keeps_a_training_row_and_checks_options() {
    let t = fixture();
    let rows = vec![rec(0, Some("7"))];
    let d = tempfile::tempdir().unwrap();
    let idx =
        organize_divisions(&rows, &t, d.path(), &OrganizeOptions { validation_fraction: 0.9, ..Default::default() })
            .unwrap();
    assert_eq!((idx.divisions[0].train, idx.divisions[0].validation), (1, 0));
    assert!(organize_divisions(&rows, &t, d.path(), &OrganizeOptions { level: 4, ..Default::default() }).is_err());
    assert!(organize_divisions(
        &rows,
        &t,
        d.path(),
        &OrganizeOptions { validation_fraction: 1.0, ..Default::default() }
    )
    .is_err());
}

#[test]
fn slugs_and_id_order() {
    assert_eq!(slug("Ethics, Law, and Patient Safety (Cross-Cutting)"), "ethics_law_and_patient_safety_cross_cutting");
    assert_eq!(slug("순환기내과"), "division");
    assert!(slug(&"a b ".repeat(50)).len() <= 60);
    let mut ids = vec!["10", "2", "1.10", "1.2", "1", UNKNOWN];
    ids.sort_by(|a, b| cmp_ids(a, b));
    assert_eq!(ids, ["1", "1.2", "1.10", "2", "10", UNKNOWN]);
}
