//! TLS against a throwaway cluster with a certificate from a test CA: verify-full
//! passes with the right host name and fails clearly with a wrong one; require
//! without a CA encrypts without checking.

use std::path::Path;
use std::process::Command;

use crate::support::{rows, text, wait_for, Pair, DST, SRC};

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

/// `NAME.key` and `NAME.crt` for `subject`, signed by the test CA in `dir`; the
/// extension makes it X.509 v3, which rustls requires.
fn sign(dir: &Path, name: &str, subject: &str, extension: &str) {
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "2",
    ];
    let ext = format!("{name}.cnf");
    std::fs::write(dir.join(&ext), format!("{extension}\n")).unwrap();
    args.extend(["-extfile", &ext]);
    openssl(dir, &args);
}

/// A test CA, a server certificate for `localhost` and a client certificate for
/// `postgres`, all signed by the CA, in `<pair dir>/tls`.
fn certificates(pair: &Pair) -> std::path::PathBuf {
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
    sign(&dir, "server", "/CN=localhost", "subjectAltName=DNS:localhost");
    sign(&dir, "client", "/CN=postgres", "extendedKeyUsage=clientAuth");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("client.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_require_encrypts() {
    let pair = Pair::new("create table t (id int primary key)").await;
    let dir = certificates(&pair);
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

#[tokio::test]
async fn the_schema_step_reaches_a_server_that_demands_client_certificates() {
    let pair = Pair::with_schemas(
        "create table t (id int primary key, v text); \
         insert into t select g, 'row ' || g from generate_series(1, 100) g",
        "",
        "",
    )
    .await;
    let dir = certificates(&pair);
    pair.cluster
        .enable_ssl(&dir.join("server.crt"), &dir.join("server.key"))
        .unwrap();
    pair.cluster
        .require_client_certificates(&dir.join("ca.crt"))
        .unwrap();
    let file = |key: &str, name: &str| format!("{key}={}", dir.join(name).display());
    let tls = [
        "host=localhost".to_string(),
        format!("port={}", pair.cluster.port()),
        "user=postgres".to_string(),
        format!("password_file={}", pair.cluster.password_file().display()),
        "sslmode=verify-full".to_string(),
        file("sslrootcert", "ca.crt"),
        file("sslcert", "client.crt"),
        file("sslkey", "client.key"),
    ];
    for (name, db) in [("src", SRC), ("dst", DST)] {
        let dbname = format!("dbname={db}");
        let mut args = vec!["add", "db", name, &dbname];
        args.extend(tls.iter().map(String::as_str));
        pair.beltctl_ok(&args);
    }
    pair.define_sync("src:source,dst:target", &[]);
    pair.beltctl_ok(&["setup", "app"]);
    let _daemon = pair.start_daemon();
    wait_for(60, "setup over TLS", || async {
        let s = pair.status();
        assert_ne!(s["state"], "failed", "{s}");
        s["state"] == "replicating"
    })
    .await;
    let catalog = belt::catalog::Catalog::open(&pair.dir.join("belt.db")).unwrap();
    let mut seen = Vec::new();
    for name in ["src", "dst"] {
        let c = belt::pg::connect(&catalog.require_db(name).unwrap())
            .await
            .unwrap();
        seen.push(rows(&c, "public.t").await);
    }
    assert_eq!(seen[0].len(), 100);
    assert_eq!(seen[0], seen[1], "rows differ");
}
