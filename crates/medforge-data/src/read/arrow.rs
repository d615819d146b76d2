//! Parquet, Arrow IPC and Hugging Face `save_to_disk` folders. Tables with the canonical schema decode
//! straight into records; any other table becomes JSON-like fields for the mapping step.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Number, Value};

use super::{Payload, RawIter, RawRow};
use crate::columnar::{batch_to_records, is_canonical};
use crate::error::{code, Location, RowError};

/// True when a folder looks like a `datasets.save_to_disk` output.
pub fn is_hf_dataset_dir(path: &Path) -> bool {
    path.join("state.json").is_file() || path.join("dataset_info.json").is_file()
}

type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>;

pub(super) fn open_parquet(file: &Path) -> Result<RawIter, RowError> {
    let loc = Location::file(file);
    let f = File::open(file).map_err(|e| RowError::file_level(loc.clone(), code::IO, e.to_string()))?;
    if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(RowError::file_level(loc, code::EMPTY_FILE, "file is empty"));
    }
    let reader = catch_decoder_panic(|| {
        ParquetRecordBatchReaderBuilder::try_new(f)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| e.to_string())
    })
    .and_then(|r| r)
    .map_err(|e| RowError::file_level(loc, code::BAD_ARROW, format!("not a readable Parquet file: {e}")))?;
    let batches: BatchIter = Box::new(reader.map(|r| r.map_err(|e| e.to_string())));
    Ok(rows_from_batches(file.to_path_buf(), batches))
}

pub(super) fn open_arrow_file(file: &Path) -> Result<RawIter, RowError> {
    let loc = Location::file(file);
    let f = File::open(file).map_err(|e| RowError::file_level(loc.clone(), code::IO, e.to_string()))?;
    if f.metadata().map(|m| m.len() == 0).unwrap_or(false) {
        return Err(RowError::file_level(loc, code::EMPTY_FILE, "file is empty"));
    }
    // `datasets` writes the IPC *stream* format; accept the file format too.
    let stream = catch_decoder_panic(|| {
        arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(f), None).map_err(|e| e.to_string())
    });
    let batches: BatchIter = match stream.and_then(|r| r) {
        Ok(r) => Box::new(r.map(|b| b.map_err(|e| e.to_string()))),
        Err(stream_err) => {
            let f = File::open(file).map_err(|e| RowError::file_level(loc.clone(), code::IO, e.to_string()))?;
            match catch_decoder_panic(|| arrow_ipc::reader::FileReader::try_new(f, None)) {
                Ok(Ok(r)) => Box::new(r.map(|b| b.map_err(|e| e.to_string()))),
                _ => {
                    return Err(RowError::file_level(
                        loc,
                        code::BAD_ARROW,
                        format!("not an Arrow IPC stream or file: {stream_err}"),
                    ))
                }
            }
        }
    };
    Ok(rows_from_batches(file.to_path_buf(), batches))
}

pub(super) fn open_hf_dataset(dir: &Path) -> Result<RawIter, RowError> {
    let loc = Location::file(&dir.join("state.json"));
    let files: Vec<PathBuf> = match std::fs::read_to_string(dir.join("state.json")) {
        Ok(text) => {
            let state: Value = serde_json::from_str(&text).map_err(|e| {
                RowError::file_level(
                    loc.clone().with_line(e.line() as u64),
                    code::BAD_JSON,
                    format!("state.json is not JSON: {e}"),
                )
            })?;
            let list = state.get("_data_files").and_then(Value::as_array).ok_or_else(|| {
                RowError::file_level(
                    loc.clone().with_field("_data_files"),
                    code::MISSING_FIELD,
                    "state.json lists no `_data_files`",
                )
            })?;
            list.iter()
                .map(|f| {
                    f.get("filename").and_then(Value::as_str).map(|n| dir.join(n)).ok_or_else(|| {
                        RowError::file_level(
                            loc.clone().with_field("_data_files"),
                            code::WRONG_TYPE,
                            "each `_data_files` entry needs a string `filename`",
                        )
                    })
                })
                .collect::<Result<_, _>>()?
        }
        Err(_) => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| RowError::file_level(Location::file(dir), code::IO, e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
                .collect();
            v.sort();
            v
        }
    };
    if files.is_empty() {
        return Err(RowError::file_level(
            Location::file(dir),
            code::EMPTY_FILE,
            "dataset folder holds no .arrow shards",
        ));
    }
    let iter = files.into_iter().flat_map(|f| -> RawIter {
        match open_arrow_file(&f) {
            Ok(it) => it,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    });
    Ok(Box::new(iter))
}

/// Run a decoder step, turning a panic into an error. The Arrow IPC reader (arrow-ipc 60) panics
/// instead of failing when a buffer's offset or length points past the message body, and the Parquet
/// decoders have had such bugs too; corrupt input must end as a located error, never a crash.
fn catch_decoder_panic<T>(step: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).map_err(|p| {
        let why = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(String::as_str));
        format!("the decoder failed on corrupt data ({})", why.unwrap_or("no message"))
    })
}

fn rows_from_batches(path: PathBuf, mut batches: BatchIter) -> RawIter {
    // The first decode error ends the file: readers can fail on the same bytes again and again, which
    // under `on_error = skip` would log rejects forever.
    let mut failed = false;
    let batches = std::iter::from_fn(move || {
        if failed {
            return None;
        }
        let next = catch_decoder_panic(|| batches.next()).unwrap_or_else(|e| Some(Err(e)));
        failed = matches!(next, Some(Err(_)));
        next
    });
    let mut offset = 0u64;
    let iter = batches.flat_map(move |batch| -> Vec<Result<RawRow, RowError>> {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                return vec![Err(RowError::file_level(
                    Location::file(&path).with_record(offset),
                    code::BAD_ARROW,
                    format!("cannot decode batch: {e}"),
                ))]
            }
        };
        let start = offset;
        offset += batch.num_rows() as u64;
        let loc = |i: usize| Location::file(&path).with_record(start + i as u64);
        if is_canonical(batch.schema().as_ref()) {
            return match batch_to_records(&batch) {
                Ok(recs) => recs
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| Ok(RawRow { location: loc(i), payload: Payload::Record(Box::new(r)) }))
                    .collect(),
                Err(e) => {
                    vec![Err(RowError::new(loc(0), code::BAD_ARROW, format!("medforge table is malformed: {e}")))]
                }
            };
        }
        match arrow_value_rows(&batch) {
            Ok(rows) => rows
                .into_iter()
                .enumerate()
                .map(|(i, m)| Ok(RawRow { location: loc(i), payload: Payload::Fields(m) }))
                .collect(),
            Err((field, msg)) => vec![Err(RowError::new(loc(0).with_field(field), code::UNSUPPORTED, msg))],
        }
    });
    Box::new(iter)
}

/// Convert a batch of any common Arrow types into JSON-like rows.
pub fn arrow_value_rows(batch: &RecordBatch) -> Result<Vec<Map<String, Value>>, (String, String)> {
    let schema = batch.schema();
    let mut cols = Vec::with_capacity(batch.num_columns());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        cols.push(column_values(c).map_err(|m| (f.name().clone(), m))?);
    }
    let mut rows: Vec<Map<String, Value>> = (0..batch.num_rows()).map(|_| Map::new()).collect();
    for (f, values) in schema.fields().iter().zip(cols) {
        for (row, v) in rows.iter_mut().zip(values) {
            row.insert(f.name().clone(), v);
        }
    }
    Ok(rows)
}

fn num<T: Into<f64> + Copy>(v: T) -> Value {
    Number::from_f64(v.into()).map(Value::Number).unwrap_or(Value::Null)
}

fn column_values(a: &ArrayRef) -> Result<Vec<Value>, String> {
    macro_rules! prim {
        ($t:ty, $conv:expr) => {{
            let p = a.as_primitive::<$t>();
            (0..p.len()).map(|i| if p.is_null(i) { Value::Null } else { $conv(p.value(i)) }).collect()
        }};
    }
    let vals: Vec<Value> = match a.data_type() {
        DataType::Null => vec![Value::Null; a.len()],
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..b.len()).map(|i| if b.is_null(i) { Value::Null } else { Value::Bool(b.value(i)) }).collect()
        }
        DataType::Utf8 => {
            a.as_string::<i32>().iter().map(|s| s.map_or(Value::Null, |s| Value::String(s.into()))).collect()
        }
        DataType::LargeUtf8 => {
            a.as_string::<i64>().iter().map(|s| s.map_or(Value::Null, |s| Value::String(s.into()))).collect()
        }
        DataType::Utf8View => {
            a.as_string_view().iter().map(|s| s.map_or(Value::Null, |s| Value::String(s.into()))).collect()
        }
        DataType::Int8 => prim!(Int8Type, |v: i8| Value::from(v)),
        DataType::Int16 => prim!(Int16Type, |v: i16| Value::from(v)),
        DataType::Int32 => prim!(Int32Type, |v: i32| Value::from(v)),
        DataType::Int64 => prim!(Int64Type, |v: i64| Value::from(v)),
        DataType::UInt8 => prim!(UInt8Type, |v: u8| Value::from(v)),
        DataType::UInt16 => prim!(UInt16Type, |v: u16| Value::from(v)),
        DataType::UInt32 => prim!(UInt32Type, |v: u32| Value::from(v)),
        DataType::UInt64 => prim!(UInt64Type, |v: u64| Value::from(v)),
        DataType::Float32 => prim!(Float32Type, |v: f32| num(v)),
        DataType::Float64 => prim!(Float64Type, |v: f64| num(v)),
        DataType::List(_) | DataType::LargeList(_) => {
            let n = a.len();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                if a.is_null(i) {
                    out.push(Value::Null);
                    continue;
                }
                let inner = match a.data_type() {
                    DataType::List(_) => a.as_list::<i32>().value(i),
                    _ => a.as_list::<i64>().value(i),
                };
                out.push(Value::Array(column_values(&inner)?));
            }
            out
        }
        DataType::Struct(fields) => {
            let s = a.as_struct();
            let children: Vec<Vec<Value>> = s.columns().iter().map(column_values).collect::<Result<_, _>>()?;
            (0..s.len())
                .map(|i| {
                    if s.is_null(i) {
                        return Value::Null;
                    }
                    let mut m = Map::new();
                    for (f, c) in fields.iter().zip(&children) {
                        m.insert(f.name().clone(), c[i].clone());
                    }
                    Value::Object(m)
                })
                .collect()
        }
        DataType::Dictionary(_, _) => {
            let d = a.as_any_dictionary();
            let values = column_values(d.values())?;
            let keys = d.normalized_keys();
            (0..a.len()).map(|i| if a.is_null(i) { Value::Null } else { values[keys[i]].clone() }).collect()
        }
        other => return Err(format!("column type {other} is not supported; cast it to string or number first")),
    };
    Ok(vals)
}
