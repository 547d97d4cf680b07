//! Plan files: applying twice changes nothing; errors name file, line and column.

use crate::support::{text, Pair, DST, SRC};

fn plan(pair: &Pair, extra_db_line: &str) -> String {
    let pw = pair.cluster.password_file().display().to_string();
    let port = pair.cluster.port();
    format!(
        "databases:\n  src:\n    host: 127.0.0.1\n    port: {port}\n    dbname: {SRC}\n    user: postgres\n    password_file: {pw}\n{extra_db_line}\
         \x20 dst: {{ host: 127.0.0.1, port: {port}, dbname: {DST}, user: postgres, password_file: {pw} }}\n\
         syncs:\n  app:\n    dbs: [src:source, dst:target]\n    tables: [t]\n    group: dc1\n"
    )
}

#[tokio::test]
async fn applying_a_plan_twice_is_a_no_op() {
    let pair = Pair::new("create table t (id int primary key)").await;
    let file = pair.dir.join("plan.yaml");
    std::fs::write(&file, plan(&pair, "")).unwrap();
    let path = file.display().to_string();

    let first = pair.beltctl_ok(&["apply", "-f", &path]);
    assert!(
        first.contains("db src: added") && first.contains("added sync 'app'"),
        "{first}"
    );
    let second = pair.beltctl_ok(&["apply", "-f", &path]);
    assert!(
        second.contains("db src: unchanged") && second.contains("db dst: unchanged"),
        "{second}"
    );
    assert!(second.contains("sync app: unchanged"), "{second}");
    let syncs: serde_json::Value =
        serde_json::from_str(&pair.beltctl_ok(&["list", "syncs", "--json"])).unwrap();
    assert_eq!(syncs.as_array().unwrap().len(), 1);
    assert_eq!(syncs[0]["group"], "dc1");
}

#[tokio::test]
async fn a_bad_plan_names_file_line_and_column() {
    let pair = Pair::new("create table t (id int primary key)").await;
    let file = pair.dir.join("plan.yaml");
    let path = file.display().to_string();

    std::fs::write(&file, plan(&pair, "    hots: typo\n")).unwrap();
    let out = pair.beltctl(&["apply", "-f", &path]);
    let e = text(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&format!("{path}:8:")) && e.contains("unknown field `hots`"),
        "{e}"
    );

    std::fs::write(&file, plan(&pair, "    password: Sw0rdf1sh\n")).unwrap();
    let out = pair.beltctl(&["apply", "-f", &path]);
    let e = text(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&format!("{path}:2:3")) && e.contains("password may not be written"),
        "{e}"
    );
    assert!(!e.contains("Sw0rdf1sh"), "{e}");

    std::fs::write(
        &file,
        plan(&pair, "    password_command: [vault, read, db/src]\n"),
    )
    .unwrap();
    let out = pair.beltctl(&["apply", "-f", &path]);
    let e = text(&out);
    assert!(!out.status.success());
    assert!(
        e.contains(&format!("{path}:2:3"))
            && e.contains("database 'src': give one of password_env, password_file and password_command"),
        "{e}"
    );
    assert_eq!(pair.beltctl_ok(&["list", "syncs", "--json"]).trim(), "[]");
}
