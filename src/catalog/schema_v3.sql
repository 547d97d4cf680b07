-- belt catalog, version 3: errors stay counted and dated after the sync recovers.
alter table sync_status add column errors integer not null default 0;
alter table sync_status add column last_error_at text;
