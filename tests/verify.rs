//! `beltctl verify` finds a single changed value among 500k rows, a missing and an
//! extra row, names their keys, and exits 1; on equal databases it exits 0.

use crate::support::{text, wait_for, Pair};

#[tokio::test]
async fn verify_names_every_differing_key() {
    let schema =
        "create table big (id serial primary key, v text, n integer); create table notes (line text)";
    let pair = Pair::new(schema).await;
    pair.src()
        .await
        .batch_execute(
            "insert into big (v, n) select md5(i::text), i from generate_series(1, 500000) i; \
             insert into notes select 'n' || i from generate_series(1, 10) i; analyze",
        )
        .await
        .unwrap();
    pair.add_sync("all");
    let mut daemon = pair.start_daemon();
    wait_for(120, "setup", || async { pair.status()["state"] == "replicating" }).await;
    assert!(daemon.terminate().success());

    let ok = pair.beltctl(&["verify", "app"]);
    assert!(ok.status.success(), "equal databases must verify: {}", text(&ok));

    pair.dst()
        .await
        .batch_execute(
            "update big set n = -1 where id = 123456; delete from big where id = 7; \
             insert into big values (900001, 'extra', 0); insert into notes values ('extra')",
        )
        .await
        .unwrap();
    let out = pair.beltctl(&["verify", "app"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    for expected in [
        "public.big: key (123456) different",
        "public.big: key (7) missing on the target",
        "public.big: key (900001) extra on the target",
        "10 rows on 'src', 11 on 'dst'",
        "verify app: DIFFERENT",
    ] {
        assert!(shown.contains(expected), "missing `{expected}` in:\n{shown}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&pair.beltctl(&["verify", "app", "--json"]).stdout).unwrap();
    assert_eq!(report["equal"], false);
    assert_eq!(
        report["tables"][0]["differences"].as_array().unwrap().len(),
        3,
        "{report}"
    );
    assert_eq!(report["sequences"][0]["ok"], true, "{report}");
}

#[tokio::test]
async fn a_standalone_sequence_is_carried_every_round_and_verified() {
    let pair =
        Pair::new("create table invoices (no bigint primary key, v text); create sequence invoice_no").await;
    pair.add_sync("all");
    let _daemon = pair.start_daemon();
    pair.kick_wait();
    pair.src()
        .await
        .batch_execute("insert into invoices select nextval('invoice_no'), 'x' from generate_series(1, 42)")
        .await
        .unwrap();
    pair.kick_wait();
    let last: i64 = pair
        .dst()
        .await
        .query_one("select last_value from invoice_no", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 42, "the target would hand out invoice numbers again");
    let out = pair.beltctl_ok(&["verify", "app", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let seqs = report["sequences"].as_array().unwrap();
    assert!(
        seqs.iter()
            .any(|s| s["sequence"] == "public.invoice_no" && s["ok"] == true),
        "{report}"
    );

    pair.as_owner(
        crate::support::SRC,
        "create sequence only_here; select nextval('only_here')",
    )
    .await;
    let out = pair.beltctl(&["verify", "app"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("sequence public.only_here: missing on the target"),
        "{}",
        text(&out)
    );
}
