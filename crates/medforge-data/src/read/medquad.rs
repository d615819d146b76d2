//! The MedQuAD XML format: `<Document id source url>` with `<Focus>`, `<FocusAnnotations><Category>` and
//! `<QAPairs><QAPair><Question qid qtype/><Answer/></QAPair></QAPairs>`. One raw row per QA pair.
//! DTD entity declarations are refused outright (no entity expansion), and nesting depth is capped.

use std::path::Path;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

use super::json::LineCounter;
use super::{check_utf8, read_capped, Limits, Payload, RawIter, RawRow};
use crate::error::{code, Location, RowError};

pub(super) fn open(file: &Path, limits: &Limits) -> Result<RawIter, RowError> {
    let bytes = read_capped(file, limits)?;
    let floc = Location::file(file);
    let text = check_utf8(&bytes, &floc, 1).map_err(|mut e| {
        e.fatal_for_file = true;
        e
    })?;
    let rows = parse(text, &floc, limits).map_err(|mut e| {
        e.fatal_for_file = true;
        e
    })?;
    Ok(Box::new(rows.into_iter().map(Ok)))
}

#[derive(Default)]
struct Doc {
    id: String,
    source: String,
    url: String,
    focus: String,
    category: String,
}

fn parse(text: &str, floc: &Location, limits: &Limits) -> Result<Vec<RawRow>, RowError> {
    // No `trim_text`: trimming would cut the spaces around entity references (`a &amp; b` → `a&b`) and
    // make `buffer_position` point before the whitespace that precedes a tag; values are trimmed on `End`.
    let mut reader = Reader::from_str(text);
    let mut lines = LineCounter::new(text);
    // Open elements: lowercase local name, the name as written, and the byte offset of the start tag.
    let mut stack: Vec<(String, String, usize)> = Vec::new();
    let mut doc = Doc::default();
    let mut rows = Vec::new();
    let mut pair: Option<(u64, Map<String, Value>)> = None;
    let mut buf_text = String::new();
    let mut saw_document = false;

    loop {
        let pos = reader.buffer_position() as usize;
        let ev = reader.read_event().map_err(|e| {
            let line = lines.line_at(reader.error_position() as usize);
            RowError::new(floc.clone().with_line(line), code::BAD_XML, format!("malformed XML: {e}"))
        })?;
        match ev {
            Event::DocType(d) => {
                let body = d.into_inner();
                if body.contains("<!ENTITY") || body.contains("ENTITY") {
                    let line = lines.line_at(pos);
                    return Err(RowError::new(
                        floc.clone().with_line(line),
                        code::XML_ENTITY,
                        "DTD entity declarations are refused (entity expansion could exhaust memory); remove the <!DOCTYPE> block",
                    ));
                }
            }
            Event::Start(e) => {
                let name = local_name(&e);
                if stack.len() >= limits.max_depth {
                    let line = lines.line_at(pos);
                    return Err(RowError::new(
                        floc.clone().with_line(line),
                        code::TOO_DEEP,
                        format!("elements nest deeper than {} levels (limits.max_depth)", limits.max_depth),
                    ));
                }
                let attr = |key: &str| -> Result<String, RowError> {
                    match e.try_get_attribute(key) {
                        Ok(Some(a)) => a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map(|v| v.into_owned())
                            .map_err(|err| {
                                RowError::new(
                                    floc.clone().with_line(lines_at(text, pos)).with_field(key),
                                    code::XML_ENTITY,
                                    format!("bad attribute value: {err}"),
                                )
                            }),
                        Ok(None) => Ok(String::new()),
                        Err(err) => Err(RowError::new(
                            floc.clone().with_line(lines_at(text, pos)).with_field(key),
                            code::BAD_XML,
                            format!("bad attribute: {err}"),
                        )),
                    }
                };
                match name.as_str() {
                    // Five NINDS files use an older `<doc docid corpus>` / `<pair>` layout and one CDC file a
                    // `<DiseaseFile fid>` root; read them all (47,457 pairs, as MedQuAD's readme says).
                    "document" | "doc" | "diseasefile" => {
                        saw_document = true;
                        let or = |a: String, b: &str| -> Result<String, RowError> {
                            if a.is_empty() {
                                attr(b)
                            } else {
                                Ok(a)
                            }
                        };
                        doc = Doc {
                            id: or(or(attr("id")?, "docid")?, "fid")?,
                            source: or(attr("source")?, "corpus")?,
                            url: attr("url")?,
                            ..Default::default()
                        };
                    }
                    "qapair" | "pair" => {
                        let line = lines.line_at(pos);
                        let mut m = Map::new();
                        m.insert("pid".into(), Value::String(attr("pid")?));
                        pair = Some((line, m));
                    }
                    "question" => {
                        if let Some((_, m)) = pair.as_mut() {
                            m.insert("qid".into(), Value::String(attr("qid")?));
                            m.insert("qtype".into(), Value::String(attr("qtype")?));
                        }
                    }
                    _ => {}
                }
                buf_text.clear();
                let qname = e.name();
                let shown: &str = qname.as_ref();
                stack.push((name, shown.to_string(), pos));
            }
            Event::Empty(e) => {
                let name = local_name(&e);
                if name == "answer" {
                    if let Some((_, m)) = pair.as_mut() {
                        m.insert("answer".into(), Value::String(String::new()));
                    }
                }
            }
            Event::Text(t) => buf_text.push_str(&t.xml10_content()),
            Event::CData(t) => buf_text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match r.xml10_content().as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        _ => None,
                    },
                    Err(_) => None,
                };
                match resolved {
                    Some(c) => buf_text.push(c),
                    None => {
                        let line = lines.line_at(pos);
                        return Err(RowError::new(
                            floc.clone().with_line(line),
                            code::XML_ENTITY,
                            format!("undefined entity `&{};` (only the five XML entities and character references are allowed)", r.xml10_content()),
                        ));
                    }
                }
            }
            Event::End(_) => {
                let name = stack.pop().map(|(name, _, _)| name).unwrap_or_default();
                let value = std::mem::take(&mut buf_text).trim().to_string();
                match name.as_str() {
                    "focus" | "doctitle-focus" => doc.focus = value,
                    "category" => doc.category = value,
                    "question" => {
                        if let Some((_, m)) = pair.as_mut() {
                            m.insert("question".into(), Value::String(value));
                        }
                    }
                    "answer" => {
                        if let Some((_, m)) = pair.as_mut() {
                            m.insert("answer".into(), Value::String(value));
                        }
                    }
                    "qapair" | "pair" => {
                        if let Some((line, mut m)) = pair.take() {
                            m.insert("document_id".into(), Value::String(doc.id.clone()));
                            m.insert("document_source".into(), Value::String(doc.source.clone()));
                            m.insert("url".into(), Value::String(doc.url.clone()));
                            m.insert("focus".into(), Value::String(doc.focus.clone()));
                            if !doc.category.is_empty() {
                                m.insert("focus_category".into(), Value::String(doc.category.clone()));
                            }
                            let record = rows.len() as u64;
                            rows.push(RawRow {
                                location: floc.clone().with_line(line).with_record(record),
                                payload: Payload::Fields(m),
                            });
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => {
                if let Some((_, shown, at)) = stack.last() {
                    return Err(RowError::new(
                        floc.clone().with_line(lines_at(text, *at)),
                        code::BAD_XML,
                        format!("malformed XML: `<{shown}>` is never closed (truncated file?)"),
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    if !saw_document {
        return Err(RowError::new(floc.clone(), code::BAD_XML, "no <Document> element: not a MedQuAD file"));
    }
    Ok(rows)
}

fn lines_at(text: &str, pos: usize) -> u64 {
    1 + text.as_bytes()[..pos.min(text.len())].iter().filter(|&&b| b == b'\n').count() as u64
}

fn local_name(e: &BytesStart) -> String {
    let name = e.local_name();
    let s: &str = name.as_ref();
    s.to_ascii_lowercase()
}
