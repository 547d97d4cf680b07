-- belt catalog, version 9: the shard a sync belongs to (from the plan file), so that
-- a daemon runs only the syncs of its own shard.
alter table syncs add column shard integer;
