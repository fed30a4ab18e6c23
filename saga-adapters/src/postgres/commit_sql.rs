//! The text of the commit statements: one workflow task's ([`single`]) and a group
//! commit's ([`batch`]), each with only the parts its commits write ([`Parts`]).
//!
//! Why: every part of a data-modifying CTE costs PostgreSQL something even when it has
//! no row to write: the executor opens and locks its table and every index of it,
//! sets up the insert or delete, and tears it down. A usual step creates and cancels
//! no timer, so the two timer parts are left out of its statement; a saga's first
//! commit has nothing in the outbox to settle. Each variant is a statement of its own
//! (prepared once per connection, planned once: `super::kept`); the parameters stay
//! numbered as in the full statement and are all bound, so a left-out part's
//! parameters are simply unused.

use std::sync::OnceLock;

use saga_runtime::port::Commit;

/// Which optional parts a statement has: a set of the bits below, in the order the
/// parts appear in the statement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Parts(u8);

impl Parts {
    /// Timers to create (`tc`).
    const TIMERS_CREATED: u8 = 1;
    /// Timers to cancel (`td`).
    const TIMERS_CANCELLED: u8 = 2;
    /// Outbox rows to remove: tasks settled, or all of a closing saga's (`od`).
    const OUTBOX_SETTLED: u8 = 4;
    /// Outbox rows to add (`oi`).
    const OUTBOX_ADDED: u8 = 8;
    /// Every part, in statement order.
    const ALL: [u8; 4] = [
        Self::TIMERS_CREATED,
        Self::TIMERS_CANCELLED,
        Self::OUTBOX_SETTLED,
        Self::OUTBOX_ADDED,
    ];

    /// The parts `c` needs.
    pub(super) fn of(c: &Commit) -> Self {
        let needed = [
            c.create_timers
                .iter()
                .any(|t| !c.cancel_timers.contains(&t.timer_id)),
            !c.cancel_timers.is_empty(),
            !c.settle_tasks.is_empty() || c.closes_execution(),
            !c.tasks.is_empty(),
        ];
        Parts(
            Self::ALL
                .into_iter()
                .zip(needed)
                .filter_map(|(bit, on)| on.then_some(bit))
                .sum(),
        )
    }

    /// The parts of a statement carrying both `self`'s and `other`'s commits.
    pub(super) fn and(self, other: Parts) -> Self {
        Parts(self.0 | other.0)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// How many distinct [`Parts`] there are.
const VARIANTS: usize = 1 << Parts::ALL.len();

/// The statement for one commit (`insert`: a new saga) with `parts`. Its answer is one
/// row: whether the version check passed, and the version found when it did not.
pub(super) fn single(parts: Parts, insert: bool) -> &'static str {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..VARIANTS * 2)
            .map(|i| build_single(Parts((i / 2) as u8), i % 2 == 1))
            .collect()
    });
    &texts[usize::from(parts.0) * 2 + usize::from(insert)]
}

/// The statement for a batch of commits whose parts together are `parts`, with the
/// insert of new sagas (`vi`) only if `inserts` (some commit starts a saga: with
/// several worker processes, those that start nothing never need it). Its answer is
/// one row per commit, in the order of the batch.
pub(super) fn batch(parts: Parts, inserts: bool) -> &'static str {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    let texts = TEXTS.get_or_init(|| {
        (0..VARIANTS * 2)
            .map(|i| build_batch(Parts((i / 2) as u8), i % 2 == 1))
            .collect()
    });
    &texts[usize::from(parts.0) * 2 + usize::from(inserts)]
}

fn build_single(parts: Parts, insert: bool) -> String {
    let always = [if insert { V_INSERT } else { V_UPDATE }, EV];
    assemble(&always, parts, [TC, TD, OD, OI], SINGLE_ANSWER)
}

fn build_batch(parts: Parts, inserts: bool) -> String {
    let always: &[&str] = if inserts {
        &[B, VU, VI, OK, B_EV]
    } else {
        &[B, VU, OK_UPDATED, B_EV]
    };
    assemble(always, parts, [B_TC, B_TD, B_OD, B_OI], BATCH_ANSWER)
}

/// `WITH` the parts every statement has, then the optional ones (`tc`, `td`, `od`,
/// `oi`, in that order) that `parts` names, then the answer.
fn assemble(always: &[&str], parts: Parts, optional: [&str; 4], answer: &str) -> String {
    let ctes: Vec<&str> = always
        .iter()
        .copied()
        .chain(
            Parts::ALL
                .into_iter()
                .zip(optional)
                .filter_map(|(bit, cte)| parts.has(bit).then_some(cte)),
        )
        .collect();
    format!("WITH {}\n{answer}", ctes.join(",\n"))
}

// One commit. `v` is the version check (and the execution-index update); the events,
// timer changes and outbox changes (`od` settles, all of the saga's tasks when `$24`
// says the commit closes it; `oi` adds) happen only if it changed a row.

/// `v` for an existing saga: `$4` status (NULL: unchanged), `$5` close time, `$6`
/// search attributes to merge, `$7`/`$8` workflow type and start (NULL: unchanged).
const V_UPDATE: &str = "\
v AS (
    UPDATE saga_executions
       SET version = $3,
           status = COALESCE($4::text, status),
           closed_at = CASE WHEN $4::text IS NULL THEN closed_at ELSE $5::timestamptz END,
           search_attributes = search_attributes || $6::jsonb,
           workflow_type = COALESCE($7::text, workflow_type),
           started_at = COALESCE($8::timestamptz, started_at),
           updated_at = $32::timestamptz
     WHERE saga_id = $1 AND version = $2
 RETURNING 1
)";

/// `v` for a new saga (`$2` is 0).
const V_INSERT: &str = "\
v AS (
    INSERT INTO saga_executions (saga_id, version, workflow_type, status, started_at,
                                 closed_at, search_attributes, updated_at)
    SELECT $1, $3, $7::text, $4::text, $8::timestamptz, $5::timestamptz, $6::jsonb,
           $32::timestamptz
     WHERE $2 = 0
    ON CONFLICT (saga_id) DO NOTHING
 RETURNING 1
)";

/// The commit's events, one row (`saga_event_batches`): `$9` their ids, consecutive.
const EV: &str = "\
ev AS (
    INSERT INTO saga_event_batches (saga_id, first_event_id, event_types, categories,
                                    timestamps, attributes, event_versions, reset_points,
                                    retries, trace_ids)
    SELECT $1, ($9::bigint[])[1], $10::text[], $11::text[], $12::timestamptz[],
           $13::text[]::json[], $14::int4[], $15::bool[], $16::bool[], $17::text[]
     WHERE EXISTS (SELECT 1 FROM v)
)";

const TC: &str = "\
tc AS (
    INSERT INTO saga_timers (timer_id, saga_id, kind, fire_at, attributes)
    SELECT t.id, t.saga, t.kind, t.at, t.attrs::jsonb
      FROM unnest($18::text[], $19::text[], $20::text[], $21::timestamptz[], $22::text[])
           AS t(id, saga, kind, at, attrs)
     WHERE EXISTS (SELECT 1 FROM v)
    ON CONFLICT (timer_id) DO NOTHING
)";

const TD: &str = "\
td AS (
    DELETE FROM saga_timers WHERE timer_id = ANY($23::text[]) AND EXISTS (SELECT 1 FROM v)
)";

const OD: &str = "\
od AS (
    DELETE FROM saga_outbox
     WHERE saga_id = $1 AND ($24::bool OR dedup_id = ANY($25::text[]))
       AND EXISTS (SELECT 1 FROM v)
)";

const OI: &str = "\
oi AS (
    INSERT INTO saga_outbox (saga_id, dedup_id, kind, queue, payload, due_at)
    SELECT o.saga, o.id, o.kind, o.queue, o.payload, $30::timestamptz
      FROM unnest($26::text[], $27::text[], $28::text[], $29::text[], $31::bytea[])
           AS o(saga, id, kind, queue, payload)
     WHERE EXISTS (SELECT 1 FROM v)
    ON CONFLICT (saga_id, dedup_id) DO NOTHING
)";

/// The version is read only when the check failed (a conflict, rare): the subquery
/// of a `CASE` branch not taken is not run.
const SINGLE_ANSWER: &str = "\
SELECT EXISTS (SELECT 1 FROM v),
       CASE WHEN EXISTS (SELECT 1 FROM v) THEN NULL
            ELSE (SELECT version FROM saga_executions WHERE saga_id = $1) END";

// N commits in one statement. `b` is one row per commit; `vu` (an existing saga: the
// version check and the listing summary) and `vi` (a new saga) return the sagas whose
// check passed, `ok`; every other part writes only rows whose owner is in `ok`. The
// `= ANY(..)` conditions keep the lookups on the primary keys whatever the planner
// thinks of the arrays' sizes. Not in `od`: it looks its rows up once per saga in `ok`
// (the planner's estimate of a CTE over `vu` is a couple of rows), and an array
// condition on an index scan that runs again for each outer row is sorted and
// de-duplicated again each time: 5 % of PostgreSQL's CPU with three worker processes
// (perf, BENCHMARKS.md). The answer: per commit, whether it was written and the
// version the statement found (the current one when it was not).

const B: &str = "\
b AS (
    SELECT b.*, b.ev_hi - (b.nv - b.expected)::int + 1 AS ev_lo
      FROM unnest($1::text[], $2::int8[], $3::int8[], $4::bool[], $5::text[],
                  $6::timestamptz[], $7::text[], $8::text[], $9::timestamptz[],
                  $10::timestamptz[], $11::bool[], $12::int4[])
           WITH ORDINALITY
           AS b(saga, expected, nv, ins, status, closed, search, wtype, started, updated,
                closes, ev_hi, ord)
)";

const VU: &str = "\
vu AS (
    UPDATE saga_executions x
       SET version = b.nv,
           status = COALESCE(b.status, x.status),
           closed_at = CASE WHEN b.status IS NULL THEN x.closed_at ELSE b.closed END,
           search_attributes = x.search_attributes || b.search::jsonb,
           workflow_type = COALESCE(b.wtype, x.workflow_type),
           started_at = COALESCE(b.started, x.started_at),
           updated_at = b.updated
      FROM b
     WHERE x.saga_id = ANY($1::text[]) AND x.saga_id = b.saga AND NOT b.ins
       AND x.version = b.expected
 RETURNING x.saga_id
)";

const VI: &str = "\
vi AS (
    INSERT INTO saga_executions (saga_id, version, workflow_type, status, started_at,
                                 closed_at, search_attributes, updated_at)
    SELECT b.saga, b.nv, b.wtype, b.status, b.started, b.closed, b.search::jsonb, b.updated
      FROM b
     WHERE b.ins AND b.expected = 0
    ON CONFLICT (saga_id) DO NOTHING
 RETURNING saga_id
)";

const OK: &str = "ok AS (SELECT saga_id FROM vu UNION ALL SELECT saga_id FROM vi)";

/// `ok` of a batch that starts no saga.
const OK_UPDATED: &str = "ok AS (SELECT saga_id FROM vu)";

/// One events row per commit whose check passed: its events are the slice
/// `ev_lo..=ev_hi` of the event arrays (`$12` says where each commit's events end in
/// them, and a commit has `nv - expected` events).
const B_EV: &str = "\
ev AS (
    INSERT INTO saga_event_batches (saga_id, first_event_id, event_types, categories,
                                    timestamps, attributes, event_versions, reset_points,
                                    retries, trace_ids)
    SELECT b.saga, ($13::bigint[])[b.ev_lo], ($14::text[])[b.ev_lo:b.ev_hi],
           ($15::text[])[b.ev_lo:b.ev_hi], ($16::timestamptz[])[b.ev_lo:b.ev_hi],
           ($17::text[])[b.ev_lo:b.ev_hi]::json[], ($18::int4[])[b.ev_lo:b.ev_hi],
           ($19::bool[])[b.ev_lo:b.ev_hi], ($20::bool[])[b.ev_lo:b.ev_hi],
           ($21::text[])[b.ev_lo:b.ev_hi]
      FROM b
     WHERE b.saga IN (SELECT saga_id FROM ok)
)";

const B_TC: &str = "\
tc AS (
    INSERT INTO saga_timers (timer_id, saga_id, kind, fire_at, attributes)
    SELECT t.id, t.saga, t.kind, t.at, t.attrs::jsonb
      FROM unnest($22::text[], $23::text[], $24::text[], $25::text[], $26::timestamptz[],
                  $27::text[])
           AS t(owner, id, saga, kind, at, attrs)
     WHERE t.owner IN (SELECT saga_id FROM ok)
    ON CONFLICT (timer_id) DO NOTHING
)";

const B_TD: &str = "\
td AS (
    DELETE FROM saga_timers x
     USING unnest($28::text[], $29::text[]) AS d(owner, id)
     WHERE x.timer_id = ANY($29::text[]) AND x.timer_id = d.id
       AND d.owner IN (SELECT saga_id FROM ok)
)";

const B_OD: &str = "\
od AS (
    DELETE FROM saga_outbox o
     WHERE o.saga_id IN (SELECT saga_id FROM ok)
       AND (o.saga_id IN (SELECT saga FROM b WHERE closes)
            OR (o.saga_id, o.dedup_id) IN
               (SELECT * FROM unnest($30::text[], $31::text[])))
)";

const B_OI: &str = "\
oi AS (
    INSERT INTO saga_outbox (saga_id, dedup_id, kind, queue, payload, due_at)
    SELECT o.saga, o.id, o.kind, o.queue, o.payload, o.due
      FROM unnest($32::text[], $33::text[], $34::text[], $35::text[], $36::text[],
                  $37::bytea[], $38::timestamptz[])
           AS o(owner, saga, id, kind, queue, payload, due)
     WHERE o.owner IN (SELECT saga_id FROM ok)
    ON CONFLICT (saga_id, dedup_id) DO NOTHING
)";

/// As in [`SINGLE_ANSWER`], the version is read only for a commit whose check failed.
const BATCH_ANSWER: &str = "\
SELECT b.ord, b.saga IN (SELECT saga_id FROM ok),
       CASE WHEN b.saga IN (SELECT saga_id FROM ok) THEN NULL
            ELSE (SELECT x.version FROM saga_executions x WHERE x.saga_id = b.saga) END
  FROM b";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_names_its_parts_and_only_those() {
        for i in 0..VARIANTS {
            let parts = Parts(i as u8);
            let texts = [
                single(parts, false),
                single(parts, true),
                batch(parts, false),
                batch(parts, true),
            ];
            for text in texts {
                assert!(text.contains("ev AS ("), "{text}");
                let optional = [
                    ("tc", Parts::TIMERS_CREATED),
                    ("td", Parts::TIMERS_CANCELLED),
                    ("od", Parts::OUTBOX_SETTLED),
                    ("oi", Parts::OUTBOX_ADDED),
                ];
                for (cte, bit) in optional {
                    let named = text.contains(&format!("{cte} AS ("));
                    assert_eq!(named, parts.has(bit), "{cte} in {text}");
                }
            }
            assert!(single(parts, true).contains("INSERT INTO saga_executions"));
            assert!(single(parts, false).contains("UPDATE saga_executions"));
            assert!(batch(parts, true).contains("vi AS ("));
            assert!(!batch(parts, false).contains("vi AS ("));
            assert!(!batch(parts, false).contains("INSERT INTO saga_executions"));
        }
    }
}
