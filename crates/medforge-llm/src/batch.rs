//! OpenAI Batch API files: the request JSONL (also accepted by vLLM's `run_batch`) and the result
//! JSONL, matched back to rows by `custom_id`.
//!
//! Request line: `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
//! Result line: `{"id": "...", "custom_id": "...", "response": {"status_code": 200, "body": {...}},
//! "error": null}`, or `"response": null, "error": {"code": "...", "message": "..."}`.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::{ChatRequest, ChatResponse, LlmError, Usage};
use crate::openai::{classify_status, parse_completion_value, request_body, StructuredOutputApi};

pub const CHAT_COMPLETIONS_URL: &str = "/v1/chat/completions";

/// The `custom_id` medforge writes on each request: `<stage>:<row id>:<cache key>`. The key (64 hex digits) lets
/// `medforge batch import` store an answer where a run will look for it; row ids may themselves contain `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomId {
    pub stage: String,
    pub row_id: String,
    pub key: String,
}

impl CustomId {
    /// Read a custom id; `None` when it was not written by medforge (no stage, or no 64-hex key).
    pub fn parse(s: &str) -> Option<CustomId> {
        let (stage, rest) = s.split_once(':')?;
        let (row_id, key) = rest.rsplit_once(':')?;
        if stage.is_empty() || key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(CustomId { stage: stage.into(), row_id: row_id.into(), key: key.into() })
    }
}

impl std::fmt::Display for CustomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.stage, self.row_id, self.key)
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequestLine {
    pub custom_id: String,
    pub method: String,
    pub url: String,
    pub body: Value,
}

impl BatchRequestLine {
    pub fn new(custom_id: impl Into<String>, model: &str, req: &ChatRequest) -> Self {
        BatchRequestLine {
            custom_id: custom_id.into(),
            method: "POST".into(),
            url: CHAT_COMPLETIONS_URL.into(),
            body: request_body(model, req, StructuredOutputApi::None),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch file: {0}")]
    Io(#[from] std::io::Error),
    #[error("batch line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("batch: custom_id `{0}` appears more than once")]
    DuplicateId(String),
}

/// Write one request line per `(custom_id, request)`. `custom_id`s must be unique. Returns the count.
pub fn write_requests<'a, W: Write>(
    mut out: W,
    model: &str,
    items: impl IntoIterator<Item = (&'a str, &'a ChatRequest)>,
) -> Result<usize, BatchError> {
    let mut seen = HashSet::new();
    let mut n = 0;
    for (id, req) in items {
        if !seen.insert(id.to_string()) {
            return Err(BatchError::DuplicateId(id.to_string()));
        }
        let line = BatchRequestLine::new(id, model, req);
        serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Read a request file back (e.g. to answer it in a test, or to check it).
pub fn read_requests<R: BufRead>(input: R) -> Result<Vec<BatchRequestLine>, BatchError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|e| BatchError::Line { line: i + 1, message: e.to_string() })?);
    }
    Ok(out)
}

/// One row's batch result: the response, or why there is none (same codes as live calls).
pub type BatchResult = Result<ChatResponse, LlmError>;

/// Read a result file into `custom_id -> result`. Lines may come in any order; a `custom_id` seen
/// twice is an error. Rows whose id is absent simply have no result (the caller re-queues them).
pub fn read_results<R: BufRead>(input: R) -> Result<BTreeMap<String, BatchResult>, BatchError> {
    let mut out = BTreeMap::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |m: String| BatchError::Line { line: i + 1, message: m };
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let id = v.get("custom_id").and_then(Value::as_str).ok_or_else(|| bad("no custom_id".into()))?.to_string();
        let result = result_of(&v);
        if out.insert(id.clone(), result).is_some() {
            return Err(BatchError::DuplicateId(id));
        }
    }
    Ok(out)
}

fn result_of(v: &Value) -> BatchResult {
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        let code = err.get("code").and_then(Value::as_str).unwrap_or("unknown");
        let msg = err.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(LlmError::skip(&format!("llm.batch.{code}"), msg));
    }
    let resp = v.get("response").filter(|r| !r.is_null());
    let Some(resp) = resp else {
        return Err(LlmError::transient("llm.batch.missing_response", "neither response nor error"));
    };
    let status = resp.get("status_code").and_then(Value::as_u64).unwrap_or(200) as u16;
    let body = resp.get("body").cloned().unwrap_or(Value::Null);
    if status != 200 {
        return Err(classify_status(status, &body, None, "the batch API key", "the batch endpoint"));
    }
    parse_completion_value(&body, Usage::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{GenParams, Message};

    #[test]
    fn round_trip_with_a_scripted_answerer() {
        let reqs: Vec<(String, ChatRequest)> = (0..4)
            .map(|i| {
                (
                    format!("row-{i}"),
                    ChatRequest::new(vec![Message::system("sys"), Message::user(format!("q{i}"))])
                        .with_params(GenParams { max_tokens: Some(8), temperature: Some(0.0), ..Default::default() }),
                )
            })
            .collect();
        let mut buf = Vec::new();
        let n = write_requests(&mut buf, "m", reqs.iter().map(|(id, r)| (id.as_str(), r))).unwrap();
        assert_eq!(n, 4);
        let lines = read_requests(&buf[..]).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2].custom_id, "row-2");
        assert_eq!((lines[2].method.as_str(), lines[2].url.as_str()), ("POST", CHAT_COMPLETIONS_URL));
        assert_eq!(lines[2].body["model"], "m");
        assert_eq!(lines[2].body["max_tokens"], 8);

        // Answer in reverse order, as a batch service may: row-1 failed, row-3 filtered, others echo.
        let mut results = String::new();
        for l in lines.iter().rev() {
            let q = l.body["messages"][1]["content"].as_str().unwrap();
            let line = match l.custom_id.as_str() {
                "row-1" => serde_json::json!({"custom_id": l.custom_id, "response": null,
                    "error": {"code": "server_error", "message": "boom"}}),
                "row-3" => serde_json::json!({"custom_id": l.custom_id, "response": {"status_code": 400,
                    "body": {"error": {"code": "content_policy_violation", "message": "no"}}}, "error": null}),
                _ => serde_json::json!({"id": "b1", "custom_id": l.custom_id, "error": null, "response": {
                    "status_code": 200, "request_id": "r",
                    "body": {"choices": [{"index": 0, "message": {"role": "assistant", "content": format!("A:{q}")},
                        "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}}}),
            };
            results.push_str(&line.to_string());
            results.push('\n');
        }
        let got = read_results(results.as_bytes()).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got["row-0"].as_ref().unwrap().text, "A:q0");
        assert_eq!(got["row-2"].as_ref().unwrap().usage, Usage { prompt_tokens: 5, completion_tokens: 2 });
        assert_eq!(got["row-1"].as_ref().unwrap_err().code(), "llm.batch.server_error");
        assert_eq!(got["row-3"].as_ref().unwrap_err().code(), "llm.content_filter");
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let r = ChatRequest::user("x");
        assert!(matches!(
            write_requests(Vec::new(), "m", [("a", &r), ("a", &r)]),
            Err(BatchError::DuplicateId(id)) if id == "a"
        ));
        let dup =
            "{\"custom_id\":\"a\",\"error\":{\"code\":\"x\"}}\n{\"custom_id\":\"a\",\"error\":{\"code\":\"x\"}}\n";
        assert!(matches!(read_results(dup.as_bytes()), Err(BatchError::DuplicateId(_))));
        assert!(matches!(read_results("{\"x\":1}\n".as_bytes()), Err(BatchError::Line { line: 1, .. })));
    }

    #[test]
    fn custom_ids_round_trip_and_reject_foreign_ones() {
        let key = "a".repeat(64);
        let id = CustomId { stage: "label".into(), row_id: "medqa:dev:3".into(), key: key.clone() };
        assert_eq!(CustomId::parse(&id.to_string()), Some(id));
        assert_eq!(CustomId::parse("label:row"), None);
        assert_eq!(CustomId::parse(&format!("label:row:{}", "z".repeat(64))), None);
        assert_eq!(CustomId::parse(&format!(":row:{key}")), None);
    }
}
