//! `codec`: encode and decode time and encoded size of a realistic history event per
//! codec: an `ActivityTaskCompleted` whose output is a ~100-byte object.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Utc};
use saga_runtime::codec::{AnyCodec, Codec};
use saga_runtime::domain::{EventType, HistoryEvent, SagaId};
use serde_json::json;

use crate::report::{median, round, Measurement, Reporter};
use crate::{BenchResult, Settings};

/// Iterations per timed batch.
const DEFAULT_ITERATIONS: u64 = 50_000;

/// Timed batches per direction (per `--repeat`, at least 5); the median is reported.
const MIN_BATCHES: usize = 5;

/// The event: a payment step's completion, shaped like the manual's example.
pub(crate) fn sample_event() -> HistoryEvent {
    let at = DateTime::parse_from_rfc3339("2024-01-15T10:30:00.123Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    HistoryEvent::new(
        SagaId::new("saga-123e4567-e89b-12d3-a456-426614174000"),
        15,
        EventType::ActivityTaskCompleted,
        at,
        json!({
            "seq": 5,
            "attempt": 1,
            "activity_type": "charge-payment",
            "output": {
                "order_id": "order-000456",
                "payment_id": "pay-7f3a9c2e51d0",
                "amount_cents": 9999,
                "currency": "EUR",
                "captured": true
            }
        }),
        "trace-5f2b8c7d9e0a1b3c".to_owned(),
    )
}

/// Median ns per call of `f` over batches of `iterations`.
fn ns_per_call(
    iterations: u64,
    batches: usize,
    mut f: impl FnMut() -> BenchResult,
) -> BenchResult<f64> {
    let mut per_call = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..iterations {
            f()?;
        }
        per_call.push(t.elapsed().as_nanos() as f64 / iterations as f64);
    }
    Ok(median(&mut per_call))
}

/// The `codec` scenario.
pub(crate) fn run(s: &Settings, out: &mut Reporter) -> BenchResult {
    let event = sample_event();
    let output_bytes = serde_json::to_vec(&event.attributes["output"])?.len();
    let iterations = s.workflows.unwrap_or(DEFAULT_ITERATIONS).max(1);
    let batches = (s.repeat * 2).max(MIN_BATCHES);
    let codecs: Vec<AnyCodec> = match s.codec_arg {
        Some(c) => vec![c],
        None => AnyCodec::ALL.to_vec(),
    };
    eprintln!("codec: {iterations} iterations x {batches} batches per codec and direction");
    for codec in codecs {
        let bytes = codec.encode(&event)?;
        let back: HistoryEvent = codec.decode(&bytes)?;
        if back != event {
            return Err(format!("{} does not round-trip the event", codec.name()).into());
        }
        let encode_ns = ns_per_call(iterations, batches, || {
            black_box(codec.encode(black_box(&event))?);
            Ok(())
        })?;
        let decode_ns = ns_per_call(iterations, batches, || {
            black_box(codec.decode::<HistoryEvent>(black_box(&bytes))?);
            Ok(())
        })?;
        let m = Measurement::new("codec", "ActivityTaskCompleted", s.backend, codec.name())
            .with("encode_ns", round(encode_ns, 1))
            .with("decode_ns", round(decode_ns, 1))
            .with("bytes", bytes.len())
            .with("output_bytes", output_bytes)
            .with("iterations", iterations * batches as u64);
        out.emit(m);
    }
    out.flush("codec: one HistoryEvent (ActivityTaskCompleted, ~100-byte output)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_output_is_about_100_bytes() {
        let e = sample_event();
        let n = serde_json::to_vec(&e.attributes["output"]).unwrap().len();
        assert!((90..=120).contains(&n), "{n}");
    }
}
