//! TLS against a throwaway cluster with a certificate from a test CA: verify-full
//! passes with the right host name and fails clearly with a wrong one; require
//! without a CA encrypts without checking.

use std::path::Path;
use std::process::Command;

use crate::support::{text, Pair, DST, SRC};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl not found: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_require_encrypts() {
    let pair = Pair::new("create table t (id int primary key)").await;
    let dir = pair.dir.join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let subj_ca = "/CN=belt test CA";
    openssl(
        &dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days",
            "2", "-subj", subj_ca,
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    pair.cluster
        .enable_ssl(&dir.join("server.crt"), &dir.join("server.key"))
        .unwrap();

    let port = format!("port={}", pair.cluster.port());
    let pw = format!("password_file={}", pair.cluster.password_file().display());
    let ca = format!("sslrootcert={}", dir.join("ca.crt").display());
    let add = |name: &str, host: &str, db: &str, tls: &[&str]| {
        let (host, dbname) = (format!("host={host}"), format!("dbname={db}"));
        let mut args = vec!["add", "db", name, &host, &port, &dbname, "user=postgres", &pw];
        args.extend(tls);
        pair.beltctl_ok(&args);
    };
    add("good", "localhost", SRC, &["sslmode=verify-full", &ca]);
    add("wrong", "127.0.0.1", SRC, &["sslmode=verify-full", &ca]);
    add("plain", "127.0.0.1", DST, &["sslmode=require"]);

    pair.beltctl_ok(&[
        "add",
        "sync",
        "ok",
        "--dbs",
        "good:source,plain:target",
        "--no-copy",
    ]);
    let out = pair.beltctl(&[
        "add",
        "sync",
        "bad",
        "--dbs",
        "wrong:source,plain:target",
        "--no-copy",
    ]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("cannot connect to database 'wrong' securely") && said.contains("sslrootcert"),
        "{said}"
    );

    let catalog = belt::catalog::Catalog::open(&pair.dir.join("belt.db")).unwrap();
    for name in ["good", "plain"] {
        let client = belt::pg::connect(&catalog.require_db(name).unwrap())
            .await
            .unwrap();
        let ssl: bool = client
            .query_one("select ssl from pg_stat_ssl where pid = pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(ssl, "database '{name}' must be reached over TLS");
    }
}
