//! What ships for Kubernetes: the manifests are valid for a current Kubernetes
//! (`kubernetes-validate`, strict) and pass checkov's checks, and the Containerfile
//! passes checkov's; the config and plan in the ConfigMap are ones belt reads.

use std::path::{Path, PathBuf};
use std::process::Command;

const KUBERNETES: &str = "1.37.0";

/// The manifests `kubectl apply -k deploy/kubernetes` applies.
const MANIFESTS: [&str; 6] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "service.yaml",
    "poddisruptionbudget.yaml",
    "networkpolicy.yaml",
    "statefulset.yaml",
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Runs `program`, failing with the install hint when it is missing; returns its
/// output when it exits 0 and fails the test with that output otherwise.
fn run(program: &str, args: &[&str], cwd: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} not runnable ({e}): pip install kubernetes-validate checkov (.ci/run does)")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{said}");
    said
}

#[test]
fn the_manifests_are_valid_kubernetes_and_pass_checkov() {
    let mut args = vec!["--strict", "--quiet", "-k", KUBERNETES];
    args.extend(MANIFESTS);
    run("kubernetes-validate", &args, &dir());
    let said = run(
        "checkov",
        &[
            "--framework",
            "kubernetes",
            "-d",
            ".",
            "--compact",
            "--quiet",
            "--skip-download",
        ],
        &dir(),
    );
    assert!(said.contains("Failed checks: 0"), "checkov:\n{said}");
    let kustomization = std::fs::read_to_string(dir().join("kustomization.yaml")).unwrap();
    for m in MANIFESTS {
        assert!(kustomization.contains(m), "kustomization.yaml lists {m}");
    }
}

#[test]
fn the_containerfile_passes_checkov() {
    // checkov knows the file by Docker's name only.
    let tmp = std::env::temp_dir().join(format!("belt-containerfile-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("Containerfile"), tmp.join("Dockerfile")).unwrap();
    let said = run(
        "checkov",
        &[
            "--framework",
            "dockerfile",
            "-f",
            "Dockerfile",
            "--compact",
            "--quiet",
            "--skip-download",
        ],
        &tmp,
    );
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(said.contains("Failed checks: 0"), "checkov:\n{said}");
}

#[test]
fn the_configmap_holds_a_config_and_a_plan_belt_reads() {
    let config = belt::config::Config::load(Some(&dir().join("belt.yaml"))).expect("belt.yaml loads");
    assert_eq!(
        config.catalog,
        Path::new("/var/lib/belt/belt.db"),
        "the catalog is on the volume"
    );
    assert_eq!(config.listen, "0.0.0.0:7543", "the probes reach the API");
    assert_eq!(
        config.plan.as_deref(),
        Some(Path::new("/etc/belt/plan.yaml")),
        "the daemon applies the mounted plan"
    );
    assert_eq!(
        config.shard,
        Some(belt::config::ShardSetting::Named("ordinal".into())),
        "pod belt-N runs shard N"
    );
    let pod = std::fs::read_to_string(dir().join("statefulset.yaml")).unwrap();
    assert!(
        pod.contains("name: BELT_CONFIG\n              value: /etc/belt/belt.yaml"),
        "`kubectl exec … beltctl` finds the daemon's config and catalog"
    );

    // Applied outside a pod, the plan's databases are stored and its sync stops only
    // where it needs the mounted Secret: the file parses and every entry is valid.
    let tmp = std::env::temp_dir().join(format!("belt-plan-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(
        tmp.join("belt.yaml"),
        format!("catalog: {}\n", tmp.join("belt.db").display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_beltctl"))
        .arg("-c")
        .arg(tmp.join("belt.yaml"))
        .args(["apply", "-f"])
        .arg(dir().join("plan.yaml"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.contains("db src: added") && stdout.contains("db dst: added"),
        "{stdout}{stderr}"
    );
    assert!(stderr.contains("password_file /etc/belt/secrets/src"), "{stderr}");
}

/// Metric names `src/api/metrics.rs` declares (its `"belt_…"` string constants).
fn exported_metrics() -> Vec<String> {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/metrics.rs")).unwrap();
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with("belt_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(String::from)
        .collect()
}

/// Every `belt_…` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("belt_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_is_json_and_names_only_metrics_the_daemon_exports() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/belt.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let exported = exported_metrics();
    assert!(exported.len() >= 10, "metric constants not found: {exported:?}");
    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(!all.is_empty(), "no panel queries");
    let mut used = std::collections::BTreeSet::new();
    for expr in &all {
        for name in metric_names(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| exported.iter().any(|e| e == b)))
                .unwrap_or(&name)
                .to_string();
            assert!(
                exported.contains(&base),
                "{}: `{name}` in `{expr}` is not a metric belt-syncd exports",
                path.display()
            );
            used.insert(base);
        }
    }
    let unused: Vec<_> = exported.iter().filter(|e| !used.contains(*e)).collect();
    assert!(unused.is_empty(), "metrics with no panel: {unused:?}");
}
