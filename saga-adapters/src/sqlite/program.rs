//! A commit as one multi-statement SQL program, sent to SQLite in one call.
//!
//! Every statement sent separately costs a round trip to sqlx's connection thread (two
//! thread switches), about as much as the statement itself. The writer therefore runs
//! each commit of a batch as one program (between the batch's `BEGIN IMMEDIATE` and
//! `COMMIT`). Its text depends only on the commit's shape (new or existing saga, how
//! many events, timers, snapshot), so sqlx prepares it once and caches it:
//!
//! ```text
//! UPDATE saga_executions SET version = ?, .. WHERE saga_id = ? AND version = ? RETURNING 1;
//! INSERT INTO saga_events (..) SELECT * FROM (VALUES (..), (..)) WHERE changes() = 1;
//! -- only when the commit has timers or a snapshot:
//! INSERT INTO temp.saga_applied (i) SELECT ? WHERE changes() = <events>;
//! INSERT INTO saga_timers (..) SELECT .. WHERE EXISTS (SELECT 1 FROM temp.saga_applied WHERE i = ?) ..;
//! DELETE FROM temp.saga_applied;
//! ```
//!
//! The version check returns a row exactly when it changed the saga's row; each later
//! statement of the commit runs only if it did (`changes()` of the statement just
//! before, or the commit's marker row), so a stale commit writes nothing and does not
//! disturb the others. Commits the program cannot express (a late start event, search
//! attributes, a history of more than one insert's worth of events) and timer
//! operations run between programs, statement by statement, in the same transaction.

use saga_runtime::port::Commit;
use sqlx::sqlite::SqliteArguments;
use sqlx::Arguments;

use super::to_us;
use crate::common::{
    category_name, exec_change, json_text, status_name, timer_kind_name, ExecChange,
    ROWS_PER_INSERT,
};

/// What a statement of the program tells about its commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Returns a row iff batch request `i`'s version check passed.
    Check(usize),
    Other,
}

/// A program under construction (one commit; the builder could hold several).
pub(super) struct Program {
    pub(super) sql: String,
    pub(super) args: SqliteArguments<'static>,
    pub(super) roles: Vec<Role>,
    /// Batch requests whose commit is in the program.
    pub(super) commits: Vec<usize>,
    uses_markers: bool,
}

impl Program {
    pub(super) fn new() -> Self {
        Program {
            sql: String::new(),
            args: SqliteArguments::default(),
            roles: Vec::new(),
            commits: Vec::new(),
            uses_markers: false,
        }
    }

    /// The number of statements.
    pub(super) fn len(&self) -> usize {
        self.roles.len()
    }

    pub(super) fn statement(&mut self, sql: &str, role: Role) {
        self.sql.push_str(sql);
        self.sql.push_str(";\n");
        self.roles.push(role);
    }

    fn arg<T>(&mut self, v: T)
    where
        T: 'static + sqlx::Encode<'static, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        // Encoding integers, text and blobs into SQLite arguments cannot fail.
        let _ = self.args.add(v);
    }

    /// Ends the program: clears the markers it used.
    pub(super) fn finish(&mut self) {
        if self.uses_markers {
            self.statement("DELETE FROM temp.saga_applied", Role::Other);
            self.uses_markers = false;
        }
    }

    /// Whether `c` can be compiled (else it runs statement by statement). The caller
    /// has validated it.
    pub(super) fn accepts(c: &Commit) -> bool {
        // Outbox writes are rare on SQLite (its engine's queue is in-process): they run
        // statement by statement. Only the settling of a closed execution is compiled.
        c.tasks.is_empty()
            && c.settle_tasks.is_empty()
            && !c.events.is_empty()
            && c.events.len() <= ROWS_PER_INSERT
            && match exec_change(c.expected_version, &c.events) {
                ExecChange::Insert(s) => s.is_none_or(|s| s.search_attributes.is_empty()),
                ExecChange::Update { search, .. } => search.is_empty(),
                ExecChange::Rebuild => false,
            }
    }

    /// Adds commit `c` (batch request `i`); `accepts(c)` must hold.
    pub(super) fn add_commit(&mut self, i: usize, c: &Commit) {
        let saga = c.saga_id.as_str().to_owned();
        let new_version = (c.expected_version + c.events.len() as u64) as i64;
        match exec_change(c.expected_version, &c.events) {
            ExecChange::Insert(summary) => {
                self.statement(
                    "INSERT INTO saga_executions (saga_id, version, workflow_type, status, \
                     started_at_us, closed_at_us, search_attributes, updated_at_us) \
                     VALUES (?, ?, ?, ?, ?, ?, '{}', ?) \
                     ON CONFLICT (saga_id) DO NOTHING RETURNING 1",
                    Role::Check(i),
                );
                self.arg(saga.clone());
                self.arg(new_version);
                self.arg(summary.as_ref().map(|s| s.workflow_type.clone()));
                self.arg(summary.as_ref().map(|s| status_name(s.status)));
                self.arg(summary.as_ref().map(|s| to_us(s.started_at)));
                self.arg(summary.as_ref().and_then(|s| s.closed_at).map(to_us));
                self.arg(last_event_us(c));
            }
            ExecChange::Update { status, .. } => {
                self.statement(
                    "UPDATE saga_executions SET version = ?, status = COALESCE(?, status), \
                     closed_at_us = CASE WHEN ? IS NULL THEN closed_at_us ELSE ? END, \
                     updated_at_us = ? \
                     WHERE saga_id = ? AND version = ? RETURNING 1",
                    Role::Check(i),
                );
                let name = status.map(|(s, _)| status_name(s));
                self.arg(new_version);
                self.arg(name);
                self.arg(name);
                self.arg(status.and_then(|(_, at)| at).map(to_us));
                self.arg(last_event_us(c));
                self.arg(saga.clone());
                self.arg(c.expected_version as i64);
            }
            ExecChange::Rebuild => unreachable!("Program::accepts refuses a rebuild"),
        }

        let mut sql = String::from(
            "INSERT INTO saga_events (saga_id, event_id, event_type, category, ts_us, \
             attributes, event_version, is_reset_point, is_retry, trace_id) \
             SELECT * FROM (VALUES ",
        );
        push_rows(&mut sql, c.events.len(), 10);
        sql.push_str(") WHERE changes() = 1");
        self.statement(&sql, Role::Other);
        for e in &c.events {
            self.arg(saga.clone());
            self.arg(e.event_id as i64);
            self.arg(e.event_type.name());
            self.arg(category_name(e.category));
            self.arg(to_us(e.timestamp));
            self.arg(json_text(&e.attributes));
            self.arg(i64::from(e.event_version));
            self.arg(e.is_reset_point);
            self.arg(e.is_retry);
            self.arg(e.trace_id.clone());
        }

        let timers: Vec<_> = c
            .create_timers
            .iter()
            .filter(|t| !c.cancel_timers.contains(&t.timer_id))
            .collect();
        let closes = c.closes_execution();
        if timers.is_empty() && c.cancel_timers.is_empty() && c.snapshot.is_none() {
            if closes {
                self.statement(
                    "DELETE FROM saga_outbox WHERE saga_id = ? AND changes() = ?",
                    Role::Other,
                );
                self.arg(saga.clone());
                self.arg(c.events.len() as i64);
            }
            self.commits.push(i);
            return;
        }
        self.uses_markers = true;
        self.statement(
            "INSERT INTO temp.saga_applied (i) SELECT ? WHERE changes() = ?",
            Role::Other,
        );
        self.arg(i as i64);
        self.arg(c.events.len() as i64);
        const APPLIED: &str = "EXISTS (SELECT 1 FROM temp.saga_applied WHERE i = ?)";
        if closes {
            self.statement(
                &format!("DELETE FROM saga_outbox WHERE saga_id = ? AND {APPLIED}"),
                Role::Other,
            );
            self.arg(saga.clone());
            self.arg(i as i64);
        }
        for chunk in timers.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO saga_timers (timer_id, saga_id, kind, fire_at_us, attributes) \
                 SELECT * FROM (VALUES ",
            );
            push_rows(&mut sql, chunk.len(), 5);
            sql.push_str(") WHERE ");
            sql.push_str(APPLIED);
            sql.push_str(" ON CONFLICT (timer_id) DO NOTHING");
            self.statement(&sql, Role::Other);
            for t in chunk {
                self.arg(t.timer_id.clone());
                self.arg(t.saga_id.as_str().to_owned());
                self.arg(timer_kind_name(t.kind));
                self.arg(to_us(t.fire_at));
                self.arg(json_text(&t.attributes));
            }
            self.arg(i as i64);
        }
        for chunk in c.cancel_timers.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from("DELETE FROM saga_timers WHERE timer_id IN (");
            push_placeholders(&mut sql, chunk.len());
            sql.push_str(") AND ");
            sql.push_str(APPLIED);
            self.statement(&sql, Role::Other);
            for id in chunk {
                self.arg(id.clone());
            }
            self.arg(i as i64);
        }
        if let Some(s) = &c.snapshot {
            self.statement(
                &format!(
                    "INSERT INTO saga_snapshots (saga_id, last_event_id, codec, state, checksum, \
                     created_at_us) SELECT ?, ?, ?, ?, ?, ? WHERE {APPLIED} \
                     ON CONFLICT (saga_id, last_event_id) DO UPDATE SET codec = excluded.codec, \
                     state = excluded.state, checksum = excluded.checksum, \
                     created_at_us = excluded.created_at_us"
                ),
                Role::Other,
            );
            self.arg(s.saga_id.as_str().to_owned());
            self.arg(i64::try_from(s.last_event_id).unwrap_or(i64::MAX));
            self.arg(s.codec.clone());
            self.arg(s.state.clone());
            self.arg(s.checksum.clone());
            self.arg(to_us(s.created_at));
            self.arg(i as i64);
            self.statement(
                &format!(
                    "DELETE FROM saga_snapshots WHERE saga_id = ? AND last_event_id NOT IN \
                     (SELECT last_event_id FROM saga_snapshots WHERE saga_id = ? \
                      ORDER BY last_event_id DESC LIMIT ?) AND {APPLIED}"
                ),
                Role::Other,
            );
            self.arg(s.saga_id.as_str().to_owned());
            self.arg(s.saga_id.as_str().to_owned());
            self.arg(i64::from(c.max_snapshots.max(1)));
            self.arg(i as i64);
        }
        self.commits.push(i);
    }
}

pub(super) fn push_placeholders(sql: &mut String, n: usize) {
    for i in 0..n {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
    }
}

pub(super) fn push_rows(sql: &mut String, rows: usize, columns: usize) {
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        push_placeholders(sql, columns);
        sql.push(')');
    }
}

/// The time of the commit's last event: the execution's `updated_at`.
fn last_event_us(c: &Commit) -> Option<i64> {
    c.events.last().map(|e| to_us(e.timestamp))
}
