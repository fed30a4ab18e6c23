-- Keys compared byte by byte. Saga ids, timer ids and outbox dedup ids are
-- identifiers, not words: nothing sorts them for a reader (the listing already orders
-- by `saga_id COLLATE "C"`), but every index lookup and insert on them compares them.
-- Under a database's default collation (`C.UTF-8`, `en_US.UTF-8`, ...) each of those
-- comparisons goes through the locale (`varstr_cmp`, `strcoll`); under "C" it is a
-- `memcmp`. With three worker processes on PostgreSQL + NATS, text comparisons were
-- 9 % of PostgreSQL's CPU (perf, BENCHMARKS.md). Equality is byte equality under
-- both (a database's default collation is deterministic), so every lookup finds what
-- it found before.
-- Rewrites the tables and their indexes once.
ALTER TABLE saga_events ALTER COLUMN saga_id TYPE text COLLATE "C";
ALTER TABLE saga_executions ALTER COLUMN saga_id TYPE text COLLATE "C";
ALTER TABLE saga_snapshots ALTER COLUMN saga_id TYPE text COLLATE "C";
ALTER TABLE saga_timers
    ALTER COLUMN timer_id TYPE text COLLATE "C",
    ALTER COLUMN saga_id TYPE text COLLATE "C";
ALTER TABLE saga_outbox
    ALTER COLUMN saga_id TYPE text COLLATE "C",
    ALTER COLUMN dedup_id TYPE text COLLATE "C";
