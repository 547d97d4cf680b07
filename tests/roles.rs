//! DESIGN.md rule 10: the application's roles are untouched and served as before.
//! Capture works for a role that owns nothing and holds DML grants only, gives that
//! role nothing, and cannot be read, forged or hijacked by it; the target arrives with
//! the source's owners, grants, policies and comments, and after cutover its schema
//! is the source's, constraint for constraint.

use belt::pg::DbSpec;
use tokio_postgres::Client;

use crate::support::{assert_same, assert_same_admin, count, text, wait_for, Pair, DST, SRC};

/// A session as a login role made by the test.
async fn login_as(pair: &Pair, role: &str, password: &str, db: &str) -> Client {
    let file = pair.dir.join(format!("{role}-password"));
    std::fs::write(&file, password).unwrap();
    let base = pair.app_spec(role, db);
    let spec = DbSpec {
        conninfo: base.conninfo.replace("user=app_user", &format!("user={role}")),
        password_file: Some(file),
        password_command: None,
        password_ttl: None,
        ..base
    };
    let c = belt::pg::connect(&spec).await.unwrap();
    c.batch_execute("set search_path = public; reset row_security")
        .await
        .unwrap();
    c
}

/// Every privilege `role` holds on tables, schemas and functions, directly or
/// through PUBLIC, in a stable order.
async fn privileges_of(admin: &Client, role: &str) -> Vec<String> {
    admin
        .query(
            "select format('%s %s: %s', kind, what, privilege_type) from ( \
               select 'table' kind, c.oid::regclass::text what, (aclexplode(c.relacl)).* from pg_class c \
               union all select 'schema', n.nspname::text, (aclexplode(n.nspacl)).* from pg_namespace n \
               union all select 'function', p.oid::regprocedure::text, (aclexplode(p.proacl)).* from pg_proc p \
             ) x where grantee = (select oid from pg_roles where rolname = $1) order by 1",
            &[&role],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The SQLSTATE of a statement that must fail.
async fn refused(c: &Client, sql: &str) -> String {
    let e = c
        .batch_execute(sql)
        .await
        .expect_err(&format!("{sql} must be refused"));
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn capture_needs_no_grant_gives_none_and_cannot_be_forged_or_hijacked() {
    let pair = Pair::new("create table t (id int primary key, v text)").await;
    // An application that truncates holds TRUNCATE, nothing more.
    pair.as_owner(SRC, "grant truncate on t to app_user").await;
    let admin = pair.admin(SRC).await;
    let granted_before = privileges_of(&admin, "app_user").await;
    pair.add_sync("t");
    let mut daemon = pair.start_daemon();
    pair.kick_wait();

    let app = pair.src().await;
    app.batch_execute(
        "insert into t select g, 'v' || g from generate_series(1, 50) g; \
         update t set v = 'changed' where id <= 10; delete from t where id > 40",
    )
    .await
    .expect("the application writes with capture installed");
    pair.kick_wait();
    assert_same(&pair, "t").await;
    app.batch_execute("truncate t; insert into t values (1, 'after truncate')")
        .await
        .expect("the application truncates with capture installed");
    pair.kick_wait();
    assert_same(&pair, "t").await;
    assert_eq!(
        privileges_of(&admin, "app_user").await,
        granted_before,
        "capture granted the application something"
    );

    // Nothing of belt is open to PUBLIC or to the application.
    let open: Vec<String> = admin
        .query(
            "select 'schema belt' where has_schema_privilege('app_user', 'belt', 'USAGE') \
             union all select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
               where n.nspname = 'belt' and has_table_privilege('app_user', c.oid, 'SELECT, INSERT, UPDATE, DELETE') \
             union all select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
               where n.nspname = 'belt' and has_function_privilege('app_user', p.oid, 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(open.is_empty(), "open to the application: {open:?}");
    let unsafe_fns = count(
        &admin,
        "pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'belt' \
         and p.prorettype = 'trigger'::regtype \
         and not (p.prosecdef and 'search_path=pg_catalog, pg_temp' = any(p.proconfig))",
    )
    .await;
    assert_eq!(
        unsafe_fns, 0,
        "every trigger function is SECURITY DEFINER with search_path pinned"
    );

    // Neither the application nor a stranger can read, forge or remove capture.
    let delta: String = admin
        .query_one("select belt.delta_name('public', 't')", &[])
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute("create role intruder login password 'intruder-pw'")
        .await
        .unwrap();
    let intruder = login_as(&pair, "intruder", "intruder-pw", SRC).await;
    for c in [&app, &intruder] {
        for sql in [
            format!("select * from belt.\"{delta}\""),
            format!("insert into belt.\"{delta}\" (id) values (7)"),
            "select belt.install_table('public', 't', array['id'])".to_string(),
            "select belt.uninstall_table('public', 't')".to_string(),
            "insert into belt.truncates (rel) values ('\"public\".\"t\"')".to_string(),
        ] {
            assert_eq!(refused(c, &sql).await, "42501", "{sql}");
        }
    }

    // A same-named object in public, first on the writer's search_path, is never
    // used by the trigger.
    daemon.terminate();
    admin
        .batch_execute("grant create on schema public to intruder")
        .await
        .unwrap();
    intruder
        .batch_execute(&format!(
            "create function public.pg_notify(text, text) returns void language plpgsql \
               as $$ begin raise exception 'hijacked pg_notify'; end $$; \
             create function public.rel_name(text, text) returns text language plpgsql \
               as $$ begin raise exception 'hijacked rel_name'; end $$; \
             create function public.txid_current() returns bigint language plpgsql \
               as $$ begin raise exception 'hijacked txid_current'; end $$; \
             create table public.\"{delta}\" (id int); grant all on public.\"{delta}\" to public"
        ))
        .await
        .unwrap();
    app.batch_execute(
        "set search_path = public, pg_catalog; \
         insert into t values (2, 'hijack?'); update t set v = 'x' where id = 1; \
         delete from t where id = 2; truncate t; insert into t values (3, 'last')",
    )
    .await
    .expect("a write through a hostile search_path");
    assert_eq!(count(&admin, &format!("public.\"{delta}\"")).await, 0);
    assert!(count(&admin, &format!("belt.\"{delta}\"")).await >= 4);
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    assert_same(&pair, "t").await;
}

/// The source's application: schemas, an enum, identity and serial keys, a foreign
/// key, a check, an index, a function, a view, a standalone sequence, comments,
/// row-level security (one table forced), column grants and default privileges.
const SHOP: &str = "
create schema sales;
create type sales.status as enum ('new', 'paid');
create table accounts (
    id bigint generated by default as identity primary key,
    owner_name text not null,
    balance numeric(12, 2) not null default 0 check (balance >= 0),
    secret text
);
comment on table accounts is 'customer accounts';
comment on column accounts.balance is 'in euros';
create table sales.orders (
    id serial primary key,
    account_id bigint not null references accounts (id),
    status sales.status not null default 'new',
    total numeric check (total >= 0)
);
comment on constraint orders_account_id_fkey on sales.orders is 'every order has an account';
create index orders_account on sales.orders (account_id);
comment on index sales.orders_account is 'orders by account';
create sequence invoice_no;
create function sales.order_total(bigint) returns numeric language sql stable
    as $$ select coalesce(sum(total), 0) from sales.orders where account_id = $1 $$;
create view sales.account_totals as select a.id, sales.order_total(a.id) as total from accounts a;
alter table accounts enable row level security;
create policy app_all on accounts to app_user using (true) with check (true);
alter table sales.orders enable row level security;
alter table sales.orders force row level security;
create policy app_orders on sales.orders to app_user using (true) with check (true);
create policy owner_orders on sales.orders to app_owner using (true) with check (true);";

/// What the source grants its reporting role (which must exist first).
const REPORTING: &str = "
grant usage on schema sales to reporting;
grant select (id, owner_name) on accounts to reporting;
grant select on sales.orders to reporting;
revoke execute on function sales.order_total(bigint) from public;
grant execute on function sales.order_total(bigint) to reporting, app_user;
grant usage on type sales.status to reporting;
alter default privileges in schema sales grant select on tables to reporting;
create policy reporting_small on accounts for select to reporting using (balance < 1000);";

/// `pg_dump --schema-only` of `db` without belt: schema belt and its triggers.
async fn schema_of(pair: &Pair, db: &str) -> Vec<(String, String, String)> {
    let program = belt::pg::binaries::find_program("pg_dump").expect("pg_dump");
    let env = belt::pg::connect::child_env(&pair.spec(db, db)).await.unwrap();
    let out = std::process::Command::new(program)
        .args(["--schema-only", "--exclude-schema=belt"])
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    belt::schema::dump::parse(&String::from_utf8_lossy(&out.stdout))
        .entries
        .into_iter()
        .filter(|e| !e.is_belt_capture())
        .map(|e| (e.kind, e.name, e.sql))
        .collect()
}

async fn validated(pair: &Pair, db: &str, constraint: &str) -> bool {
    pair.admin(db)
        .await
        .query_one(
            "select convalidated from pg_constraint where conname = $1",
            &[&constraint],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_target_serves_the_same_roles_and_schema_after_cutover() {
    let pair = Pair::two_servers_with_schemas(SHOP, "", "").await;
    pair.admin(SRC)
        .await
        .batch_execute("create role reporting nologin")
        .await
        .unwrap();
    pair.as_owner(SRC, REPORTING).await;
    let app = pair.src().await;
    app.batch_execute(
        "insert into accounts (owner_name, balance) select 'owner ' || g, g from generate_series(1, 200) g; \
         insert into sales.orders (account_id, total) select 1 + g % 200, g from generate_series(1, 500) g; \
         select nextval('invoice_no') from generate_series(1, 42)",
    )
    .await
    .unwrap();

    pair.add_dbs_at([pair.server_of(SRC).port(), pair.server_of(DST).port()]);
    pair.define_sync("src:source,dst:target", &[]);
    let out = pair.beltctl(&["precheck", "app"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "a missing role blocks: {said}");
    assert!(
        said.contains("role reporting is used on 'src'")
            && said.contains("grantee on column public.accounts.owner_name")
            && said.contains("CREATE ROLE reporting NOLOGIN"),
        "{said}"
    );
    pair.admin(DST)
        .await
        .batch_execute("create role reporting nologin")
        .await
        .unwrap();
    pair.beltctl_ok(&["precheck", "app"]);

    pair.beltctl_ok(&["setup", "app"]);
    let _daemon = pair.start_daemon();
    app.batch_execute("update accounts set balance = balance + 1 where id % 7 = 0")
        .await
        .unwrap();
    wait_for(120, "setup", || async { pair.status()["state"] == "replicating" }).await;
    pair.kick_wait();

    // The application can use the target as it uses the source.
    let dst_app = pair.dst().await;
    for table in ["accounts", "sales.orders"] {
        assert_same(&pair, table).await;
    }
    assert_eq!(count(&dst_app, "sales.account_totals").await, 200);
    assert!(
        !validated(&pair, DST, "orders_account_id_fkey").await,
        "NOT VALID until cutover"
    );

    // A row that breaks the foreign key on the target fails the constraints gate.
    // The only write to an application table as the superuser in the suite: only
    // replica mode (no FK triggers) can make such a row, which is the point.
    let dst_admin = pair.admin(DST).await;
    dst_admin
        .batch_execute(
            "set session_replication_role = replica; \
             insert into sales.orders (id, account_id, total) values (99999, 424242, 1)",
        )
        .await
        .unwrap();
    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("gate 'constraints' failed")
            && said.contains("orders_account_id_fkey")
            && said.contains("(account_id)=(424242)")
            && said.contains("'src' is still authoritative"),
        "{said}"
    );
    // The fence ended the application's sessions; a new one may log in again.
    pair.src()
        .await
        .batch_execute("insert into accounts (owner_name) values ('still writable')")
        .await
        .expect("the source stays writable after a failed gate");
    dst_admin
        .batch_execute("delete from sales.orders where id = 99999")
        .await
        .unwrap();

    let out = pair.beltctl(&["cutover", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(validated(&pair, DST, "orders_account_id_fkey").await);
    assert_eq!(
        schema_of(&pair, SRC).await,
        schema_of(&pair, DST).await,
        "schemas differ after cutover"
    );

    // The application writes on the new side, through its sequences, as itself.
    dst_app
        .batch_execute(
            "insert into accounts (owner_name) values ('new side'); \
             insert into sales.orders (account_id, total) \
               select id, 5 from accounts where owner_name = 'new side'; \
             select nextval('invoice_no')",
        )
        .await
        .expect("the application writes on the new side");
    let invoice: i64 = dst_app
        .query_one("select last_value from invoice_no", &[])
        .await
        .unwrap()
        .get(0);
    assert!(invoice > 42, "invoice numbers are handed out again: {invoice}");
    pair.kick_wait();

    let out = pair.beltctl(&["failback", "app", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    pair.src()
        .await
        .batch_execute("insert into accounts (owner_name) values ('after failback')")
        .await
        .expect("the application writes on the old side again");
    pair.kick_wait();
    for table in ["accounts", "sales.orders"] {
        assert_same_admin(&pair, table).await;
    }
}
