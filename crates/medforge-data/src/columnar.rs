//! The canonical Arrow schema and conversions between [`Record`]s and Arrow `RecordBatch`es.
//! Parquet and Hugging Face outputs share this schema, so every tool sees the same columns.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{Float64Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, GenericListArray, RecordBatch, StringArray, StructArray};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{Map, Value};

use crate::record::{Annotation, McqOption, Record, RecordKind, Score, Verdict};

/// Schema metadata key marking a medforge table, with its schema version.
pub const SCHEMA_VERSION_KEY: &str = "medforge.schema_version";
pub const SCHEMA_VERSION: &str = "1";

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn option_fields() -> Fields {
    Fields::from(vec![utf8("letter", false), utf8("text", false)])
}

fn score_fields() -> Fields {
    Fields::from(vec![utf8("name", false), Field::new("value", DataType::Float64, false)])
}

fn annotation_fields() -> Fields {
    Fields::from(vec![
        utf8("stage", false),
        utf8("verdict", false),
        utf8("reason", true),
        Field::new(
            "scores",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(score_fields()), true))),
            false,
        ),
    ])
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// The canonical schema, in [`Record::FIELDS`] order.
pub fn schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields = vec![
                utf8("id", false),
                utf8("source", false),
                utf8("kind", false),
                utf8("question", false),
                utf8("context", true),
                Field::new("options", list_of(DataType::Struct(option_fields())), false),
                utf8("answer_letter", true),
                utf8("answer", true),
                utf8("reasoning", true),
                utf8("response", true),
                utf8("chosen", true),
                utf8("rejected", true),
                utf8("specialty", true),
                Field::new("specialties", list_of(DataType::Utf8), false),
                utf8("division", true),
                Field::new("divisions", list_of(DataType::Utf8), false),
                utf8("language", true),
                utf8("metadata", false),
                Field::new("annotations", list_of(DataType::Struct(annotation_fields())), false),
            ];
            let meta = HashMap::from([(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string())]);
            Arc::new(Schema::new_with_metadata(fields, meta))
        })
        .clone()
}

/// True when a table's columns are the canonical ones (medforge's own outputs, or Python round-trips of them).
pub fn is_canonical(schema: &Schema) -> bool {
    schema.metadata().contains_key(SCHEMA_VERSION_KEY)
        || (Record::FIELDS.iter().all(|f| schema.field_with_name(f).is_ok()))
}

/// Encode records into one batch.
pub fn records_to_batch(records: &[Record]) -> Result<RecordBatch, ArrowError> {
    let n = records.len();
    // Builders are sized up front (one cheap pass over the lengths) so long text columns are not
    // regrown and copied several times per batch.
    let text = |f: &dyn Fn(&Record) -> &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, records.iter().map(|r| f(r).len()).sum());
        records.iter().for_each(|r| b.append_value(f(r)));
        Arc::new(b.finish())
    };
    let opt = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, records.iter().map(|r| f(r).map_or(0, str::len)).sum());
        records.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish())
    };
    let strings = |f: &dyn Fn(&Record) -> &[String]| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for r in records {
            for s in f(r) {
                b.values().append_value(s);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };

    let mut options = ListBuilder::new(StructBuilder::from_fields(option_fields(), 0))
        .with_field(Arc::new(Field::new("item", DataType::Struct(option_fields()), true)));
    for r in records {
        let sb = options.values();
        for o in &r.options {
            sb.field_builder::<StringBuilder>(0).expect("letter").append_value(&o.letter);
            sb.field_builder::<StringBuilder>(1).expect("text").append_value(&o.text);
            sb.append(true);
        }
        options.append(true);
    }

    let mut annotations = ListBuilder::new(StructBuilder::from_fields(annotation_fields(), 0))
        .with_field(Arc::new(Field::new("item", DataType::Struct(annotation_fields()), true)));
    for r in records {
        let sb = annotations.values();
        for a in &r.annotations {
            sb.field_builder::<StringBuilder>(0).expect("stage").append_value(&a.stage);
            sb.field_builder::<StringBuilder>(1).expect("verdict").append_value(a.verdict.as_str());
            sb.field_builder::<StringBuilder>(2).expect("reason").append_option(a.reason.as_deref());
            let scores =
                sb.field_builder::<ListBuilder<Box<dyn arrow_array::builder::ArrayBuilder>>>(3).expect("scores");
            let inner = scores.values().as_any_mut().downcast_mut::<StructBuilder>().expect("score struct");
            for s in &a.scores {
                inner.field_builder::<StringBuilder>(0).expect("name").append_value(&s.name);
                inner.field_builder::<Float64Builder>(1).expect("value").append_value(s.value);
                inner.append(true);
            }
            scores.append(true);
            sb.append(true);
        }
        annotations.append(true);
    }

    let metadata: ArrayRef = {
        // One reused buffer instead of a fresh String per row.
        let mut b = StringBuilder::with_capacity(n, n * 64);
        let mut buf = Vec::with_capacity(1024);
        for r in records {
            buf.clear();
            serde_json::to_writer(&mut buf, &r.metadata).expect("metadata serializes");
            b.append_value(std::str::from_utf8(&buf).expect("serde_json writes UTF-8"));
        }
        Arc::new(b.finish())
    };

    let columns: Vec<ArrayRef> = vec![
        text(&|r| &r.id),
        text(&|r| &r.source),
        text(&|r| r.kind.as_str()),
        text(&|r| &r.question),
        opt(&|r| r.context.as_deref()),
        Arc::new(options.finish()),
        opt(&|r| r.answer_letter.as_deref()),
        opt(&|r| r.answer.as_deref()),
        opt(&|r| r.reasoning.as_deref()),
        opt(&|r| r.response.as_deref()),
        opt(&|r| r.chosen.as_deref()),
        opt(&|r| r.rejected.as_deref()),
        opt(&|r| r.specialty.as_deref()),
        strings(&|r| &r.specialties),
        opt(&|r| r.division.as_deref()),
        strings(&|r| &r.divisions),
        opt(&|r| r.language.as_deref()),
        metadata,
        Arc::new(annotations.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Decode a canonical batch (columns found by name, so column order and extra columns don't matter).
pub fn batch_to_records(batch: &RecordBatch) -> Result<Vec<Record>, String> {
    let col = |name: &str| -> Result<&ArrayRef, String> {
        batch.column_by_name(name).ok_or_else(|| format!("missing column `{name}`"))
    };
    let strs = |name: &str| -> Result<StringArray, String> {
        let c = col(name)?;
        arrow_cast_utf8(c).ok_or_else(|| format!("column `{name}` is {}, expected a string column", c.data_type()))
    };
    let get = |a: &StringArray, i: usize| -> Option<String> { a.is_valid(i).then(|| a.value(i).to_string()) };

    let (id, source, kind, question, context) =
        (strs("id")?, strs("source")?, strs("kind")?, strs("question")?, strs("context")?);
    let (answer_letter, answer, reasoning, response) =
        (strs("answer_letter")?, strs("answer")?, strs("reasoning")?, strs("response")?);
    let (chosen, rejected, specialty, division, language, metadata) = (
        strs("chosen")?,
        strs("rejected")?,
        strs("specialty")?,
        strs("division")?,
        strs("language")?,
        strs("metadata")?,
    );
    let options = col("options")?.as_list_opt::<i32>().ok_or("column `options` is not a list")?;
    let specialties = col("specialties")?.as_list_opt::<i32>().ok_or("column `specialties` is not a list")?;
    let divisions = col("divisions")?.as_list_opt::<i32>().ok_or("column `divisions` is not a list")?;
    let annotations = col("annotations")?.as_list_opt::<i32>().ok_or("column `annotations` is not a list")?;

    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let kind_s = kind.value(i);
        let kind = RecordKind::parse(kind_s).ok_or_else(|| format!("row {i}: unknown kind `{kind_s}`"))?;
        let meta: Map<String, Value> = match get(&metadata, i) {
            None => Map::new(),
            Some(s) if s.is_empty() => Map::new(),
            Some(s) => {
                serde_json::from_str(&s).map_err(|e| format!("row {i}: column `metadata` is not a JSON object: {e}"))?
            }
        };
        let mut r = Record::new(id.value(i), source.value(i), kind, question.value(i));
        r.context = get(&context, i);
        r.options = list_structs(options, i, |s, j| {
            let l = arrow_cast_utf8(s.column(0)).ok_or("option letter is not a string")?;
            let t = arrow_cast_utf8(s.column(1)).ok_or("option text is not a string")?;
            Ok(McqOption { letter: l.value(j).to_string(), text: t.value(j).to_string() })
        })?;
        r.answer_letter = get(&answer_letter, i);
        r.answer = get(&answer, i);
        r.reasoning = get(&reasoning, i);
        r.response = get(&response, i);
        r.chosen = get(&chosen, i);
        r.rejected = get(&rejected, i);
        r.specialty = get(&specialty, i);
        r.specialties = list_strings(specialties, i)?;
        r.division = get(&division, i);
        r.divisions = list_strings(divisions, i)?;
        r.language = get(&language, i);
        r.metadata = meta;
        r.annotations = list_structs(annotations, i, |s, j| {
            let stage = arrow_cast_utf8(s.column(0)).ok_or("annotation stage is not a string")?;
            let verdict = arrow_cast_utf8(s.column(1)).ok_or("annotation verdict is not a string")?;
            let reason = arrow_cast_utf8(s.column(2)).ok_or("annotation reason is not a string")?;
            let verdict = match verdict.value(j) {
                "kept" => Verdict::Kept,
                "dropped" => Verdict::Dropped,
                v => return Err(format!("unknown verdict `{v}`")),
            };
            let scores_col = s.column(3).as_list_opt::<i32>().ok_or("annotation scores is not a list")?;
            let scores = list_structs(scores_col, j, |ss, k| {
                let name = arrow_cast_utf8(ss.column(0)).ok_or("score name is not a string")?;
                let value = ss
                    .column(1)
                    .as_primitive_opt::<arrow_array::types::Float64Type>()
                    .ok_or("score value is not float64")?;
                Ok(Score { name: name.value(k).to_string(), value: value.value(k) })
            })?;
            Ok(Annotation {
                stage: stage.value(j).to_string(),
                verdict,
                reason: reason.is_valid(j).then(|| reason.value(j).to_string()),
                scores,
            })
        })?;
        out.push(r);
    }
    Ok(out)
}

fn arrow_cast_utf8(a: &ArrayRef) -> Option<StringArray> {
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().clone()),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Some(a.as_string_view().iter().collect()),
        DataType::Null => Some(StringArray::new_null(a.len())),
        _ => None,
    }
}

fn list_strings(list: &GenericListArray<i32>, i: usize) -> Result<Vec<String>, String> {
    if list.is_null(i) {
        return Ok(Vec::new());
    }
    let v = list.value(i);
    let s = arrow_cast_utf8(&v).ok_or("list items are not strings")?;
    Ok(s.iter().flatten().map(str::to_string).collect())
}

fn list_structs<T>(
    list: &GenericListArray<i32>,
    i: usize,
    f: impl Fn(&StructArray, usize) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if list.is_null(i) {
        return Ok(Vec::new());
    }
    let v = list.value(i);
    let s = v.as_struct_opt().ok_or("list items are not structs")?;
    (0..s.len()).filter(|&j| s.is_valid(j)).map(|j| f(s, j)).collect()
}
