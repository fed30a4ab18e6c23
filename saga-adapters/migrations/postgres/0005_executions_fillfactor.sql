-- Room in every page of `saga_executions` for the new version of its rows. Every
-- workflow task updates its execution's row (version, and `updated_at`); with full
-- pages the new version goes to another page, which PostgreSQL must then index in all
-- five indexes of the table (the GIN one included). With free space in the page, and
-- no indexed column changed, the update is HOT: no index is touched. Applies to pages
-- written from now on.
ALTER TABLE saga_executions SET (fillfactor = 70);
