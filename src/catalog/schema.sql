-- belt catalog, version 1. Never holds a password: dbs keeps only libpq keys and
-- where the password comes from.
create table dbs (
    name text primary key,
    conninfo text not null,
    password_env text,
    password_file text,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create table syncs (
    name text primary key,
    conflict text not null default 'latest',
    grp text,
    paused integer not null default 0,
    kick_seq integer not null default 0,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create table sync_dbs (
    sync text not null references syncs(name) on delete cascade,
    db text not null references dbs(name),
    role text not null check (role in ('source', 'target')),
    ord integer not null,
    primary key (sync, db)
);

create table relations (
    sync text not null references syncs(name) on delete cascade,
    schema_name text not null,
    table_name text not null,
    info text not null,
    primary key (sync, schema_name, table_name)
);

create table positions (
    sync text not null references syncs(name) on delete cascade,
    db text not null,
    snapshot text not null,
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    primary key (sync, db)
);

create table sync_status (
    sync text primary key references syncs(name) on delete cascade,
    state text not null,
    last_error text,
    rounds integer not null default 0,
    rows_applied integer not null default 0,
    pending_rows integer not null default 0,
    lag_seconds real not null default 0,
    last_round_at text,
    kick_done integer not null default 0,
    updated_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
