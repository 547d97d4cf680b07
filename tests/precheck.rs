//! `beltctl precheck` reports every blocker and warning, and exits 1 when blocked.

use crate::support::{text, Pair, SRC};

const SCHEMA: &str = "
create table t (id int primary key, v text generated always as ('x') stored);
create table nokey (v text);
create unlogged table scratch (id int primary key);
select lo_create(0);";

#[tokio::test]
async fn precheck_names_each_blocker_and_exits_1() {
    let pair = Pair::with_schemas(SCHEMA, "", "").await;
    pair.admin(SRC)
        .await
        .batch_execute(&format!(
            "create role app login password 'app-secret'; grant select on all tables in schema public to app; \
             grant set on parameter session_replication_role to app; revoke create on database {SRC} from public"
        ))
        .await
        .unwrap();
    pair.add_dbs_as("app", "app-secret");
    pair.beltctl_ok(&["add", "sync", "app", "--dbs", "src:source,dst:target"]);
    pair.admin(SRC)
        .await
        .batch_execute("revoke set on parameter session_replication_role from app")
        .await
        .unwrap();

    let out = pair.beltctl_env(&["precheck", "app"], &[("BELT_PG_BIN", "/nonexistent")]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("BLOCKED"), "{shown}");
    for expected in [
        "GRANT CREATE ON DATABASE",
        "GRANT SET ON PARAMETER session_replication_role",
        "GRANT app_owner TO app",
        "ALTER ROLE app CREATEROLE",
        "GRANT pg_signal_backend TO app",
        "pg_dump",
    ] {
        assert!(shown.contains(expected), "missing {expected}: {shown}");
    }

    let out = pair.beltctl_env(&["precheck", "app", "--json"], &[("BELT_PG_BIN", "/nonexistent")]);
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = reports[0]["findings"].as_array().unwrap();
    let of = |level: &str| -> Vec<String> {
        findings
            .iter()
            .filter(|f| f["level"] == level)
            .map(|f| f["check"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        of("blocker"),
        [
            "capture privileges",
            "table rights",
            // The target holds schema belt too (the copy mark and the fence).
            "capture privileges",
            "apply without echo",
            "pg_dump",
            "schema owners"
        ],
        "{reports}"
    );
    let warnings = of("warning");
    for w in ["large objects", "unlogged tables", "table without key"] {
        assert!(warnings.iter().any(|x| x == w), "missing warning {w}: {reports}");
    }
    let tables = reports[0]["tables"].as_array().unwrap();
    let t = tables.iter().find(|t| t["table"] == "public.t").unwrap();
    assert_eq!(t["key"], "primary key (id)");
    assert_eq!(t["generated_columns"][0], "v");
}
