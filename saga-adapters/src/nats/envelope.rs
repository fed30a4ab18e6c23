//! A task on the wire, and a dead letter in its stream.
//!
//! A task message is published to `<prefix>.<queue>.<kind>` with the task's payload as
//! the message body, untouched, and two headers: `Nats-Msg-Id` (the dedup id, on which
//! JetStream drops a re-published task within its duplicate window) and `Saga-Id`.
//! The queue and kind are read back from the subject, which is what routed the message.
//!
//! Header values cannot hold CR or LF, and the server trims surrounding spaces, so ids
//! are percent-escaped where needed: control bytes, space and `%` become `%XX`. The
//! ids the engine makes (`order-42:7`) go through unchanged.

use std::fmt::Write;

use async_nats::header::{HeaderName, IntoHeaderName};
use async_nats::HeaderMap;
use bytes::Bytes;
use saga_runtime::domain::SagaId;
use saga_runtime::port::{DeadLetter, Task, TaskKind};
use saga_runtime::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::subject;

/// JetStream's deduplication header, `Nats-Msg-Id` (a well-known name: the client
/// parses it into this constant, which a plain string does not match).
pub(crate) const MSG_ID: HeaderName = async_nats::header::NATS_MESSAGE_ID;
/// The saga the task belongs to.
pub(crate) const SAGA_ID: &str = "Saga-Id";

/// `<prefix>.<queue>.<kind>`.
pub(crate) fn task_subject(prefix: &str, queue: &str, kind: TaskKind) -> String {
    format!("{prefix}.{queue}.{}", kind.name())
}

/// The subject, headers and body of `task`; bad ids are `Validation` errors.
pub(crate) fn encode(prefix: &str, task: &Task) -> Result<(String, HeaderMap, Bytes)> {
    subject::check_queue(&task.queue)?;
    if task.dedup_id.is_empty() {
        return Err(Error::new(
            ErrorKind::Validation,
            "a task needs a dedup_id (`<saga_id>:<event_id>`): the broker deduplicates on it",
        )
        .with("saga_id", &task.saga_id)
        .with("queue", &task.queue));
    }
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, escape_header(&task.dedup_id).as_str());
    headers.insert(SAGA_ID, escape_header(task.saga_id.as_str()).as_str());
    let subject = task_subject(prefix, &task.queue, task.kind);
    Ok((subject, headers, Bytes::copy_from_slice(&task.payload)))
}

/// A message on a task subject that is not a task this adapter published.
#[derive(Debug)]
pub(crate) struct Malformed {
    /// What is wrong with it.
    pub(crate) reason: String,
    /// What could be read of it, so that it is dead-lettered rather than lost.
    pub(crate) best_effort: Task,
}

/// Reads a task message back (`subject` is where it was published).
pub(crate) fn decode(
    prefix: &str,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> std::result::Result<Task, Malformed> {
    let header = |name: HeaderName| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let mut problems = Vec::new();

    let route = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.split_once('.'));
    let (queue, kind) = match route {
        Some((queue, kind_name)) => {
            let kind = [TaskKind::Workflow, TaskKind::Activity]
                .into_iter()
                .find(|k| k.name() == kind_name);
            if kind.is_none() {
                problems.push(format!("unknown task kind `{kind_name}` in its subject"));
            }
            (queue.to_owned(), kind)
        }
        None => {
            problems.push(format!(
                "subject `{subject}` is not `{prefix}.<queue>.<kind>`"
            ));
            (String::new(), None)
        }
    };
    let mut id = |name: HeaderName| match header(name.clone()).map(unescape_header) {
        Some(Some(v)) => v,
        Some(None) => {
            problems.push(format!("header `{name}` is not a valid escaped value"));
            String::new()
        }
        None => {
            problems.push(format!("header `{name}` is missing"));
            String::new()
        }
    };
    let saga_id = id(SAGA_ID.into_header_name());
    let dedup_id = id(MSG_ID);
    let task = Task {
        kind: kind.unwrap_or(TaskKind::Activity),
        saga_id: SagaId::new(saga_id),
        queue,
        dedup_id,
        payload: payload.to_vec(),
    };
    if problems.is_empty() {
        Ok(task)
    } else {
        Err(Malformed {
            reason: problems.join("; "),
            best_effort: task,
        })
    }
}

/// A dead letter as stored in the dead-letter stream (JSON: it is read by people and
/// tools as much as by this adapter).
#[derive(Serialize, Deserialize)]
struct DeadRecord {
    task: Task,
    reason: String,
    delivery_count: u32,
}

/// The body of a dead-letter message.
pub(crate) fn encode_dead(dead: &DeadLetter) -> Result<Bytes> {
    let record = DeadRecord {
        task: dead.task.clone(),
        reason: dead.reason.clone(),
        delivery_count: dead.delivery_count,
    };
    serde_json::to_vec(&record).map(Bytes::from).map_err(|e| {
        Error::new(ErrorKind::Codec, "cannot encode a dead letter")
            .with("saga_id", &dead.task.saga_id)
            .with_source(e)
    })
}

/// Reads a dead-letter message back.
pub(crate) fn decode_dead(payload: &[u8], stream: &str, seq: u64) -> Result<DeadLetter> {
    let record: DeadRecord = serde_json::from_slice(payload).map_err(|e| {
        Error::new(
            ErrorKind::Codec,
            "a message in the dead-letter stream is not a dead letter",
        )
        .with("stream", stream)
        .with("seq", seq)
        .with_source(e)
    })?;
    Ok(DeadLetter {
        task: record.task,
        reason: record.reason,
        delivery_count: record.delivery_count,
    })
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == b' ' || b == b'%'
}

/// Percent-escapes the bytes a header value cannot carry as they are.
pub(crate) fn escape_header(s: &str) -> String {
    if !s.bytes().any(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match u8::try_from(c) {
            Ok(b) if needs_escape(b) => {
                let _ = write!(out, "%{b:02X}");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Undoes [`escape_header`]; `None` for a malformed escape.
pub(crate) fn unescape_header(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(saga: &str, dedup: &str) -> Task {
        Task {
            kind: TaskKind::Workflow,
            saga_id: SagaId::new(saga),
            queue: "orders".into(),
            dedup_id: dedup.into(),
            payload: vec![0, 159, 146, 150, b'\n'],
        }
    }

    #[test]
    fn round_trip() {
        for (saga, dedup) in [
            ("order-42", "order-42:7"),
            (" spaced saga\n", " spaced saga\n:1"),
            ("100%", "100%:2"),
            ("ünï", "ünï:3"),
        ] {
            let sent = task(saga, dedup);
            let (subject, headers, body) = encode("saga.tasks", &sent).unwrap();
            assert_eq!(subject, "saga.tasks.orders.workflow");
            let got = decode("saga.tasks", &subject, Some(&headers), &body).unwrap();
            assert_eq!(got, sent);
        }
        let (_, headers, _) = encode("p", &task("order-42", "order-42:7")).unwrap();
        assert_eq!(headers.get(MSG_ID).unwrap().as_str(), "order-42:7");
    }

    #[test]
    fn bad_tasks_are_validation_errors() {
        let mut t = task("s", "");
        assert_eq!(encode("p", &t).unwrap_err().kind, ErrorKind::Validation);
        t.dedup_id = "s:1".into();
        t.queue = "a.b".into();
        assert_eq!(encode("p", &t).unwrap_err().kind, ErrorKind::Validation);
    }

    #[test]
    fn foreign_messages_are_malformed_not_lost() {
        let bad = decode("saga.tasks", "saga.tasks.orders.other", None, b"x").unwrap_err();
        assert!(bad.reason.contains("unknown task kind"), "{}", bad.reason);
        assert!(
            bad.reason.contains("`Saga-Id` is missing"),
            "{}",
            bad.reason
        );
        assert_eq!(bad.best_effort.queue, "orders");
        assert_eq!(bad.best_effort.payload, b"x");
    }
}
