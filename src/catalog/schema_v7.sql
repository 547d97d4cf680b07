-- belt catalog, version 7: whether the last round was one transaction per side
-- (consistent) or, catching up on a backlog, applied in chunks.
alter table sync_status add column consistent integer;
