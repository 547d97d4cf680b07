-- belt catalog, version 2: per-direction status, clock offset, conflict record.
alter table sync_status add column directions text not null default '[]';
alter table sync_status add column clock_offset_ms real;
alter table sync_status add column conflicts integer not null default 0;

create table conflicts (
    id integer primary key autoincrement,
    sync text not null references syncs(name) on delete cascade,
    recorded_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    table_name text not null,
    key text not null,
    strategy text not null,
    first_db text not null,
    first_changed_at text not null,
    second_db text not null,
    second_changed_at text not null,
    winner text
);
create index conflicts_by_sync on conflicts (sync, id);

-- Keys whose rows could not be applied; `beltctl retry` puts them back in play.
create table parked (
    id integer primary key autoincrement,
    sync text not null references syncs(name) on delete cascade,
    parked_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    schema_name text not null,
    table_name text not null,
    key text not null,
    from_db text not null,
    failed_db text not null,
    error text not null
);
create index parked_by_sync on parked (sync, id);

-- Initial copy (rule 6): 'pending' until the daemon starts it, 'copying', then 'done'.
alter table syncs add column copy text not null default 'done';

-- One row per part of a table being copied (large integer-keyed tables are split into
-- key ranges copied in parallel): the last key of the part's last finished chunk.
create table copy_progress (
    sync text not null references syncs(name) on delete cascade,
    schema_name text not null,
    table_name text not null,
    part integer not null default 0,
    last_key text,
    upper_key text,
    rows integer not null default 0,
    total integer not null default 0,
    done integer not null default 0,
    primary key (sync, schema_name, table_name, part)
);

-- Roles belt set to NOLOGIN (revoke-logins), so that restore-logins gives back
-- exactly those and leaves roles that were NOLOGIN on purpose alone.
create table revoked_logins (
    sync text not null references syncs(name) on delete cascade,
    db text not null,
    role text not null,
    revoked_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    primary key (sync, db, role)
);

-- Cutover and failback: which database the applications write to (null: the
-- sync's first database), and whether a switch is under way.
alter table syncs add column authority text;
alter table syncs add column switching integer not null default 0;
