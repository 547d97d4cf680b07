-- belt catalog, version 4: a sync added with --tables all follows the database's
-- tables. NULL: the listed tables only; '': every schema; otherwise one schema.
alter table syncs add column tables_all text;
