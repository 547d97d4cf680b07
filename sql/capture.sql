-- belt change capture, version 11.
--
-- Installed into schema belt on every database a sync reads changes from. Safe to run
-- again: every statement is idempotent, and installing is serialized by an advisory
-- lock taken by the caller. Every function pins search_path and quotes identifiers
-- with format('%I'), so nothing here depends on the session that calls it.
--
-- The application's roles get nothing here and need nothing (DESIGN.md rule 10): the
-- trigger functions are SECURITY DEFINER, owned by the role that installs them, so a
-- write by a role that may not even see schema belt still records its keys. PUBLIC
-- holds no privilege on the schema, its tables or its functions (a trigger fires its
-- function without an EXECUTE check, so the triggers need none either).

create schema if not exists belt;
revoke all on schema belt from public;

create table if not exists belt.meta (
    version integer not null
);

-- One row per TRUNCATE of a captured table; applied before a round's rows. rel is
-- the captured table; part, when set, the one partition of it that was truncated.
create table if not exists belt.truncates (
    rel text not null,
    belt_txid bigint not null default txid_current(),
    belt_changed_at timestamptz not null default clock_timestamp()
);
alter table belt.truncates add column if not exists part text;

-- The partitions of each captured partitioned table as belt last saw them here, and
-- the table itself as a marker (part = root). ATTACH, DETACH and DROP fire no
-- trigger: comparing with this list is how belt notices them.
create table if not exists belt.partitions (
    root text not null,
    part text not null,
    primary key (root, part)
);

-- Sequences belt set to draw every other value while two databases are sources
-- (DESIGN.md rule 7), with the increment to put back at teardown.
create table if not exists belt.interleaved (
    schema_name text not null,
    seq_name text not null,
    original_increment bigint not null,
    primary key (schema_name, seq_name)
);

-- One row per sync that uses this database. copied_token: written on both databases
-- of the sync when its initial copy (and indexes) finished, the same random token on
-- each; a daemon that lost its catalog and sets the sync up again finds matching
-- tokens and resumes from the deltas here instead of copying again.
create table if not exists belt.syncs (
    sync text primary key,
    copied_token text,
    copied_at timestamptz
);
-- The fence: the daemon that holds the sync's advisory lock (on its first database)
-- bumps epoch on both databases and names itself in owner; every transaction that
-- writes for the sync starts with belt.fence(sync, epoch), so a daemon that lost the
-- sync to another fails there instead of writing.
alter table belt.syncs add column if not exists epoch bigint not null default 0;
alter table belt.syncs add column if not exists owner text;
alter table belt.syncs add column if not exists owned_at timestamptz;

-- The syncs whose daemon waits here for a NOTIFY on belt_kick (one row each, written
-- by the daemon on its listening session). The triggers notify only while a row is
-- here and its lease (until) runs: a transaction that notifies takes a cluster-wide
-- lock at commit and holds it until its commit is flushed, so notifying transactions
-- commit one at a time (no group commit). While its rounds move changes a daemon
-- needs no wake-up and removes its row; a waiting daemon renews the lease, so the row
-- of a sync paused or a daemon gone stops counting when it runs out.
create table if not exists belt.listeners (
    sync text primary key,
    until timestamptz
);
alter table belt.listeners add column if not exists until timestamptz;

create or replace function belt.fence(p_sync text, p_epoch bigint) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    v_owner text;
begin
    -- FOR SHARE: a takeover's UPDATE of the row waits for this transaction to end,
    -- and every transaction after the takeover sees the new epoch.
    perform 1 from belt.syncs where sync = p_sync and epoch = p_epoch for share;
    if not found then
        select owner into v_owner from belt.syncs where sync = p_sync;
        raise exception 'sync % is fenced here: % runs it now (epoch % is no longer current)',
            p_sync, coalesce(v_owner, 'another belt-syncd'), p_epoch
            using errcode = 'BLT01';
    end if;
end
$$;

create or replace function belt.capture_version() returns integer
language sql stable
set search_path = pg_catalog, pg_temp
as $$ select coalesce(max(version), 0) from belt.meta $$;

-- Name of the delta table of schema.table: readable, unique, at most 51 bytes. The
-- readable part is cut at 40 *bytes* on a character boundary, so the hash of the full
-- name always survives PostgreSQL's 63-byte limit on identifiers, whatever the
-- encoding (version 3 and older cut at 40 characters: a multibyte name lost its hash
-- and two tables could share one delta table).
create or replace function belt.delta_name(p_schema text, p_table text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
    select 'd_' || (select left(x.s, n) from generate_series(least(length(x.s), 40), 0, -1) n
                     where octet_length(left(x.s, n)) <= 40 limit 1)
        || '_' || left(md5(p_schema || '.' || p_table), 8)
      from (select p_schema || '_' || p_table as s) x
$$;

-- "schema"."table", always quoted: the form belt.truncates.rel holds and belt matches.
create or replace function belt.rel_name(p_schema text, p_table text) returns text
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
    select '"' || replace(p_schema, '"', '""') || '"."' || replace(p_table, '"', '""') || '"'
$$;

create or replace function belt.on_truncate() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_root regclass := pg_partition_root(tg_relid);
begin
    if v_root is null or v_root = tg_relid then
        insert into belt.truncates (rel) values (belt.rel_name(tg_table_schema, tg_table_name));
    else
        -- One partition (a truncate of the whole table fires here too, for each
        -- partition; the engine then applies the whole one).
        insert into belt.truncates (rel, part)
        select belt.rel_name(n.nspname, c.relname), belt.rel_name(tg_table_schema, tg_table_name)
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where c.oid = v_root;
    end if;
    if exists (select 1 from belt.listeners where until > now()) then
        perform pg_notify('belt_kick', '');
    end if;
    return null;
end
$$;

-- Partitions (at any depth) of a partitioned table, as rel_name, with their bounds.
create or replace function belt.partitions_of(p_root regclass)
returns table (rel regclass, name text, parent text, bound text, leaf boolean)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select c.oid::regclass, belt.rel_name(n.nspname, c.relname), t.parentrelid::regclass::text,
           pg_get_expr(c.relpartbound, c.oid), c.relkind <> 'p'
      from pg_partition_tree(p_root) t
      join pg_class c on c.oid = t.relid
      join pg_namespace n on n.oid = c.relnamespace
     where t.relid <> p_root
$$;

-- A truncate trigger on one partition: statement triggers are not cloned to
-- partitions, and a TRUNCATE of a partition fires only its own.
create or replace function belt.capture_partition_truncate(p_rel regclass) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if not exists (select 1 from pg_trigger where tgrelid = p_rel and tgname = 'belt_capture_truncate') then
        execute format('create trigger belt_capture_truncate after truncate on %s '
            'for each statement execute function belt.on_truncate()', p_rel);
    end if;
end
$fn$;

-- First sight of a partitioned table: its partitions are what the initial copy
-- covers; record them and put the truncate trigger on each. Does nothing later.
create or replace function belt.init_partitions(p_schema text, p_table text) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_root text := belt.rel_name(p_schema, p_table);
    r record;
begin
    if exists (select 1 from belt.partitions where root = v_root) then
        return;
    end if;
    insert into belt.partitions values (v_root, v_root);
    for r in select * from belt.partitions_of(v_root::regclass) loop
        perform belt.capture_partition_truncate(r.rel);
        insert into belt.partitions values (v_root, r.name) on conflict do nothing;
    end loop;
end
$fn$;

-- What changed among the partitions of the given captured tables since the last
-- call: a partition created or attached ('attached', with its bound) gets the
-- truncate trigger and has every key it holds queued in the table's delta (its rows
-- came without a trigger); one detached or dropped is reported as 'detached'.
create or replace function belt.partition_changes(p_roots text[])
returns table (root text, part text, parent text, change text, bound text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_root text;
    v_delta text;
    v_keys text;
    r record;
begin
    foreach v_root in array p_roots loop
        continue when not exists (select 1 from belt.partitions p where p.root = v_root);
        if to_regclass(v_root) is null then
            continue;
        end if;
        select format('belt.%I', belt.delta_name(n.nspname, c.relname)) into v_delta
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where c.oid = v_root::regclass;
        select string_agg(format('%I', a.attname), ', ' order by a.attnum) into v_keys
          from pg_attribute a
         where a.attrelid = v_delta::regclass and a.attnum > 0 and not a.attisdropped
           and a.attname not in ('belt_txid', 'belt_changed_at', 'belt_op');
        for r in select * from belt.partitions_of(v_root::regclass) t
                  where not exists (select 1 from belt.partitions p where p.root = v_root and p.part = t.name)
        loop
            perform belt.capture_partition_truncate(r.rel);
            insert into belt.partitions values (v_root, r.name);
            if r.leaf then
                execute format('insert into %s (%s) select %s from %s', v_delta, v_keys, v_keys, r.rel);
            end if;
            root := v_root; part := r.name; parent := r.parent; change := 'attached'; bound := r.bound;
            return next;
        end loop;
        for r in select p.part from belt.partitions p
                  where p.root = v_root and p.part <> v_root
                    and not exists (select 1 from belt.partitions_of(v_root::regclass) t where t.name = p.part)
        loop
            delete from belt.partitions p where p.root = v_root and p.part = r.part;
            root := v_root; part := r.part; parent := null; change := 'detached'; bound := null;
            return next;
        end loop;
    end loop;
end
$fn$;

-- Drops every capture trigger belt may have put on a table (both modes).
create or replace function belt.drop_capture_triggers(p_rel text) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set client_min_messages = warning
as $fn$
declare
    v_name text;
begin
    foreach v_name in array array['belt_capture_ins', 'belt_capture_upd', 'belt_capture_del',
                                  'belt_capture_row', 'belt_capture_kick', 'belt_capture_truncate']
    loop
        execute format('drop trigger if exists %I on %s', v_name, p_rel);
    end loop;
end
$fn$;

-- Installs capture on one table. p_mode is 'statement' (statement-level triggers with
-- transition tables, the default) or 'row' (row-level triggers, kept for the
-- benchmark that compares the two). Returns the delta table's name.
--
-- A partitioned table is always captured row by row: PostgreSQL clones a row-level
-- trigger of a partitioned table onto every partition, present, created or attached
-- later, so a write addressed to a partition itself is captured too (a statement
-- trigger fires only for the table the statement names). Each row may notify (while
-- a daemon waits: belt.listeners); NOTIFY folds the repeats of one transaction into one.
--
-- When the table already has this capture (same trigger function, every trigger
-- there) nothing is locked or changed: a daemon restart under load must not queue
-- behind or block the application. Otherwise the application's table is locked
-- first, then the delta table: an application transaction takes them in that order
-- too (its statement, then the trigger's insert), so the two cannot deadlock.
create or replace function belt.install_table(
    p_schema text, p_table text, p_keys text[], p_mode text default 'statement'
) returns text
language plpgsql
set search_path = pg_catalog, pg_temp
set client_min_messages = warning
as $fn$
declare
    v_rel text := format('%I.%I', p_schema, p_table);
    v_delta text := belt.delta_name(p_schema, p_table);
    v_old_delta text := 'd_' || left(p_schema || '_' || p_table, 40) || '_'
        || left(md5(p_schema || '.' || p_table), 8);  -- version 3's name
    v_cols text;      -- "a", "b"
    v_coldefs text;   -- "a" integer not null, "b" text not null
    v_old text;       -- old."a", old."b"
    v_new text;       -- new."a", new."b"
    v_changed text;   -- old."a" is distinct from new."a" or ...
    v_body text;
    v_notify text := '';
    v_triggers text[];
    v_found integer;
begin
    select string_agg(format('%I', k), ', ' order by i),
           string_agg(format('%I %s not null', k, format_type(a.atttypid, a.atttypmod)), ', ' order by i),
           string_agg(format('old.%I', k), ', ' order by i),
           string_agg(format('new.%I', k), ', ' order by i),
           string_agg(format('old.%I is distinct from new.%I', k, k), ' or ' order by i),
           count(*)
      into v_cols, v_coldefs, v_old, v_new, v_changed, v_found
      from unnest(p_keys) with ordinality as u(k, i)
      join pg_attribute a on a.attrelid = v_rel::regclass and a.attname = u.k
     where not a.attisdropped;
    if v_found is distinct from cardinality(p_keys) or v_found = 0 then
        raise exception 'belt: key columns % not found on %', p_keys, v_rel;
    end if;

    if (select c.relkind = 'p' from pg_class c where c.oid = v_rel::regclass) then
        p_mode := 'row';
        v_notify := 'if exists (select 1 from belt.listeners where until > now()) then perform pg_notify(''belt_kick'', ''''); end if;';
    end if;

    if p_mode = 'statement' then
        v_body := format($body$
            begin
                if tg_op = 'INSERT' then
                    insert into belt.%1$I (%2$s, belt_op) select %2$s, 'i' from belt_new;
                elsif tg_op = 'UPDATE' then
                    insert into belt.%1$I (%2$s, belt_op)
                        select %2$s, 'u' from belt_new union select %2$s, 'u' from belt_old;
                else
                    insert into belt.%1$I (%2$s, belt_op) select %2$s, 'd' from belt_old;
                end if;
                if exists (select 1 from belt.listeners where until > now()) then
                    perform pg_notify('belt_kick', '');
                end if;
                return null;
            end
        $body$, v_delta, v_cols);
        v_triggers := array['belt_capture_del', 'belt_capture_ins', 'belt_capture_truncate', 'belt_capture_upd'];
    elsif p_mode = 'row' then
        v_body := format($body$
            begin
                if tg_op = 'INSERT' then
                    insert into belt.%1$I (%2$s, belt_op) values (%3$s, 'i');
                elsif tg_op = 'DELETE' then
                    insert into belt.%1$I (%2$s, belt_op) values (%4$s, 'd');
                else
                    insert into belt.%1$I (%2$s, belt_op) values (%3$s, 'u');
                    if %5$s then
                        insert into belt.%1$I (%2$s, belt_op) values (%4$s, 'u');
                    end if;
                end if;
                %6$s
                return null;
            end
        $body$, v_delta, v_cols, v_new, v_old, v_changed, v_notify);
        v_triggers := array['belt_capture_kick', 'belt_capture_row', 'belt_capture_truncate'];
    else
        raise exception 'belt: unknown capture mode %', p_mode;
    end if;

    if to_regclass(format('belt.%I', v_delta)) is not null
       and exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                    where n.nspname = 'belt' and p.proname = v_delta || '_fn' and p.prosrc = v_body
                      and p.prosecdef)
       and (select array_agg(tgname::text order by tgname::text collate "C") from pg_trigger
             where tgrelid = v_rel::regclass and tgname like 'belt\_capture\_%') = v_triggers
    then
        if v_notify <> '' then
            perform belt.init_partitions(p_schema, p_table);
        end if;
        return v_delta;
    end if;

    execute format('lock table %s in access exclusive mode', v_rel);
    -- A delta table made under version 3's name keeps its pending keys.
    if to_regclass(format('belt.%I', v_delta)) is null
       and to_regclass(format('belt.%I', v_old_delta)) is not null then
        execute format('alter table belt.%I rename to %I', v_old_delta, v_delta);
    end if;
    execute format(
        'create table if not exists belt.%I (%s, '
        'belt_txid bigint not null default txid_current(), '
        'belt_changed_at timestamptz not null default clock_timestamp(), belt_op "char")',
        v_delta, v_coldefs);
    execute format('alter table belt.%I add column if not exists belt_op "char"', v_delta);
    execute format('create index if not exists %I on belt.%I (%s)',
        v_delta || '_key', v_delta, v_cols);

    perform belt.drop_capture_triggers(v_rel);

    execute format(
        'create or replace function belt.%I() returns trigger language plpgsql security definer '
        'set search_path = pg_catalog, pg_temp as %L', v_delta || '_fn', v_body);
    execute format('revoke all on function belt.%I() from public', v_delta || '_fn');
    if v_notify <> '' then
        -- Creating or attaching a partition clones the trigger, which PostgreSQL
        -- allows only to a role that may execute its function: the partitioned
        -- table's owner gets that, nothing else (called directly, a trigger function
        -- fails; and a delta only names a key, which apply re-reads).
        execute format('grant execute on function belt.%I() to %I', v_delta || '_fn',
            (select pg_get_userbyid(c.relowner) from pg_class c where c.oid = v_rel::regclass));
    end if;
    if p_mode = 'statement' then
        execute format('create trigger belt_capture_ins after insert on %s '
            'referencing new table as belt_new for each statement execute function belt.%I()',
            v_rel, v_delta || '_fn');
        execute format('create trigger belt_capture_upd after update on %s '
            'referencing old table as belt_old new table as belt_new '
            'for each statement execute function belt.%I()', v_rel, v_delta || '_fn');
        execute format('create trigger belt_capture_del after delete on %s '
            'referencing old table as belt_old for each statement execute function belt.%I()',
            v_rel, v_delta || '_fn');
    else
        execute format('create trigger belt_capture_row after insert or update or delete on %s '
            'for each row execute function belt.%I()', v_rel, v_delta || '_fn');
        execute format('create trigger belt_capture_kick after insert or update or delete on %s '
            'for each statement execute function belt.kick()', v_rel);
    end if;

    execute format('create trigger belt_capture_truncate after truncate on %s '
        'for each statement execute function belt.on_truncate()', v_rel);
    if v_notify <> '' then
        perform belt.init_partitions(p_schema, p_table);
    end if;
    return v_delta;
end
$fn$;

create or replace function belt.kick() returns trigger
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if exists (select 1 from belt.listeners where until > now()) then
        perform pg_notify('belt_kick', '');
    end if;
    return null;
end
$$;

-- Removes capture from one table: its triggers, trigger function and delta table.
create or replace function belt.uninstall_table(p_schema text, p_table text) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
set client_min_messages = warning
as $fn$
declare
    v_rel text := format('%I.%I', p_schema, p_table);
    v_delta text := belt.delta_name(p_schema, p_table);
    v_part regclass;
begin
    if to_regclass(v_rel) is not null then
        perform belt.drop_capture_triggers(v_rel);
        for v_part in select rel from belt.partitions_of(v_rel::regclass) loop
            execute format('drop trigger if exists belt_capture_truncate on %s', v_part);
        end loop;
    end if;
    delete from belt.partitions where root = belt.rel_name(p_schema, p_table);
    execute format('drop function if exists belt.%I()', v_delta || '_fn');
    execute format('drop table if exists belt.%I', v_delta);
    delete from belt.truncates where rel = belt.rel_name(p_schema, p_table);
end
$fn$;

revoke all on all tables in schema belt from public;
revoke all on all functions in schema belt from public;

delete from belt.meta;
insert into belt.meta (version) values (11);
