//! End to end: the `vigil` binary against the Kubernetes API test server, through a generated
//! kubeconfig — rollback (dry run, real, rerun), deploy and promote.

// Tests may unwrap (a panic is the failure report) and compare exact values on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};
use vigil_kube_testserver::{TestServer, Verb};

const NS: &str = "shop";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("vigil-cli-deploy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn vigil(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(&args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn deployment(name: &str, track: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "shop", "track": track}},
            "template": {"metadata": {"labels": {"app": "shop", "track": track}},
                "spec": {"containers": [{"name": "web", "image": format!("shop:{track}")}]}}}})
}

async fn ready(server: &TestServer, name: &str, n: i64) {
    for _ in 0..3000 {
        let d = server.get("deployments", NS, name).unwrap();
        if d["status"]["readyReplicas"] == n
            && d["status"]["observedGeneration"] == d["metadata"]["generation"]
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{name} not ready");
}

async fn shop(server: &TestServer) {
    server
        .create(deployment("shop-baseline", "baseline", 2))
        .unwrap();
    server
        .create(deployment("shop-canary", "canary", 4))
        .unwrap();
    server
        .create(json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "shop-baseline", "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop-baseline"},
                "minReplicas": 2, "maxReplicas": 10}}))
        .unwrap();
    for (svc, track) in [("shop-baseline", "baseline"), ("shop-canary", "canary")] {
        server
            .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": NS},
                "spec": {"selector": {"app": "shop", "track": track}, "ports": [{"port": 80}]}}))
            .unwrap();
    }
    server
        .create(
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": [
                {"name": "shop-baseline", "port": 80, "weight": 50},
                {"name": "shop-canary", "port": 80, "weight": 50}]}]}}),
        )
        .unwrap();
    ready(server, "shop-baseline", 2).await;
    ready(server, "shop-canary", 4).await;
}

const CONFIG: &str = "namespace: shop\ncluster: shop\ntraffic: {type: http_route, route: shop}\n\
strategy: {type: red_black}\nrollback: {drain_seconds: 30, ready_timeout_seconds: 10}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_rollback_dry_run_then_real_then_rerun() {
    let server = TestServer::start().await.unwrap();
    shop(&server).await;
    let dir = Dir::new("rollback");
    let kubeconfig = dir.write("kubeconfig", &server.kubeconfig(NS, "vigil-cli"));
    let config = dir.write("deploy.yaml", CONFIG);
    let base = [
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
        "--canary",
        "shop-canary",
        "--baseline",
        "shop-baseline",
    ];

    let mut a = args(&["rollback"]);
    a.extend(args(&base));
    a.push("--dry-run".into());
    let out = vigil(a).await;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("required ready baseline replicas before traffic moves: 5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("API calls it would make (dry run: nothing was changed):"),
        "{stdout}"
    );
    assert!(stdout.contains("PATCH  /apis/apps/v1/namespaces/shop/deployments/shop-baseline/scale  (merge: replicas 2 -> 5)"), "{stdout}");
    assert!(stdout.contains("SLEEP  30s  (drain)"), "{stdout}");
    let writes = server
        .audit()
        .into_iter()
        .filter(|a| a.user == "vigil-cli" && a.verb.is_write())
        .count();
    assert_eq!(writes, 0, "a dry run changes nothing");
    assert!(server
        .audit()
        .iter()
        .any(|a| a.user == "vigil-cli" && a.verb == Verb::Get));

    let mut a = args(&["rollback", "--json", "--drain-seconds", "0"]);
    a.extend(args(&base));
    let out = vigil(a).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "rolled_back");
    assert_eq!(report["report"]["plan"]["required_replicas"], 5);
    assert_eq!(report["report"]["steps"].as_array().unwrap().len(), 8);
    let route = server.get("httproutes", NS, "shop").unwrap();
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["weight"], 100);
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][1]["weight"], 0);
    assert!(server.get("deployments", NS, "shop-canary").is_none());

    let mut a = args(&["rollback", "--json"]);
    a.extend(args(&base));
    let out = vigil(a).await;
    assert!(out.status.success());
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["status"], "nothing_to_do");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_deploy_and_promote_red_black_over_a_service() {
    let server = TestServer::start().await.unwrap();
    server
        .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "namespace": NS},
            "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}))
        .unwrap();
    let dir = Dir::new("deploy");
    let kubeconfig = dir.write("kubeconfig", &server.kubeconfig(NS, "vigil-cli"));
    let config = dir.write(
        "deploy.yaml",
        "namespace: shop\ncluster: shop\ntraffic: {type: service, service: shop}\nstrategy: {type: red_black, max_history: 2}\n",
    );
    let manifest = dir.write(
        "shop.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: shop}\n  template:\n    metadata:\n      labels: {app: shop}\n    spec:\n      containers:\n      - name: web\n        image: shop:1\n",
    );
    for expected in ["shop-v000", "shop-v001"] {
        let out = vigil(args(&[
            "deploy",
            "--config",
            &config,
            "--kubeconfig",
            &kubeconfig,
            "--manifest",
            &manifest,
        ]))
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("Deployed {expected}")), "{stdout}");
    }
    let out = vigil(args(&[
        "promote",
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
        "--server-group",
        "shop-v000",
        "--json",
    ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["previous"], "shop-v001");
    let svc = server.get("services", NS, "shop").unwrap();
    assert_eq!(
        svc["spec"]["selector"]["vigil.dev/server-group"],
        "shop-v000"
    );
}

#[tokio::test]
async fn bad_config_and_unknown_groups_fail_with_the_field_named() {
    let dir = Dir::new("bad");
    let config = dir.write("deploy.yaml", "namespace: shop\ncluster: shop\ntraffic: {type: http_route, route: shop}\nstrategy: {type: rolling_red_black, steps: [50, 25]}\n");
    let out = vigil(args(&[
        "rollback",
        "--config",
        &config,
        "--canary",
        "x",
        "--baseline",
        "y",
        "--kubeconfig",
        "/nonexistent",
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("strategy.steps"), "{stderr}");

    let config = dir.write("ok.yaml", CONFIG);
    let out = vigil(args(&[
        "rollback",
        "--config",
        &config,
        "--canary",
        "daemonset/x",
        "--baseline",
        "y",
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--canary") && stderr.contains("daemonset"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_deploy_is_refused_but_rollback_runs() {
    let server = TestServer::start().await.unwrap();
    shop(&server).await;
    let dir = Dir::new("window");
    let kubeconfig = dir.write("kubeconfig", &server.kubeconfig(NS, "vigil-cli"));
    // Every day but today (UTC): the window is closed now, whatever the date.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .weekday()
        .to_monday_one_offset();
    let days: Vec<&str> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as i8 + 1 != today)
        .map(|(_, d)| d)
        .collect();
    let config = dir.write(
        "deploy.yaml",
        &format!(
            "{CONFIG}windows: {{time_zone: UTC, outside: refuse, allowed: [{{days: [{}], from: \"00:00\", to: \"24:00\"}}]}}\n",
            days.join(", ")
        ),
    );
    let manifest = dir.write(
        "shop.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n    spec: {containers: [{name: web, image: shop:2}]}\n",
    );
    let out = vigil(args(&[
        "deploy",
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
        "--manifest",
        &manifest,
    ]))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("outside the allowed deployment windows")
            && stderr.contains("next window opens"),
        "{stderr}"
    );

    let out = vigil(args(&[
        "rollback",
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
        "--canary",
        "shop-canary",
        "--baseline",
        "shop-baseline",
        "--drain-seconds",
        "0",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[move traffic]") && stdout.contains("Rolled back"),
        "{stdout}"
    );
    assert!(server.get("deployments", NS, "shop-canary").is_none());
}

fn writes_by(server: &TestServer, user: &str) -> Vec<String> {
    server
        .audit()
        .into_iter()
        .filter(|a| a.user == user && a.verb.is_write())
        .map(|a| format!("{} {}", a.verb.as_str(), a.path))
        .collect()
}

/// `vigil deploy --dry-run` and `vigil promote --dry-run` print the plan and change nothing: no
/// write reaches the API server and its state is the same before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_promote_dry_runs_print_the_plan_and_change_nothing() {
    let server = TestServer::start().await.unwrap();
    server
        .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shop", "namespace": NS},
            "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]}}))
        .unwrap();
    server
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shop-config", "namespace": NS},
            "data": {"a": "1"}}))
        .unwrap();
    let dir = Dir::new("dry-run");
    let kubeconfig = dir.write("kubeconfig", &server.kubeconfig(NS, "vigil-cli"));
    let config = dir.write(
        "deploy.yaml",
        "namespace: shop\ncluster: shop\ntraffic: {type: service, service: shop}\nstrategy: {type: red_black, max_history: 0}\n",
    );
    let manifest = dir.write(
        "shop.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: shop\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: shop}\n  template:\n    metadata:\n      labels: {app: shop}\n    spec:\n      containers:\n      - name: web\n        image: shop:1\n        envFrom: [{configMapRef: {name: shop-config}}]\n",
    );
    let deploy = |extra: &[&str]| {
        let mut a = args(&[
            "deploy",
            "--config",
            &config,
            "--kubeconfig",
            &kubeconfig,
            "--manifest",
            &manifest,
        ]);
        a.extend(args(extra));
        a
    };
    // A real deploy first, so the dry runs have a previous group and something to delete.
    let out = vigil(deploy(&[])).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
        .settle(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(3),
        )
        .await;
    server.clear_audit();
    let before = server.snapshot().objects;

    let out = vigil(deploy(&["--dry-run"])).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("server group: shop-v001 (2 replicas)"),
        "{stdout}"
    );
    assert!(stdout.contains("traffic now on: shop-v000"), "{stdout}");
    assert!(
        stdout.contains("config to version: configmaps shop-config"),
        "{stdout}"
    );
    assert!(stdout.contains("would delete: shop-v000"), "{stdout}");
    assert!(stdout.contains("Dry run: nothing was changed."), "{stdout}");

    let out = vigil(deploy(&["--dry-run", "--json"])).await;
    assert!(out.status.success());
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["plan"]["server_group"], "shop-v001");
    assert_eq!(plan["plan"]["traffic_steps"], json!([100]));

    let out = vigil(args(&[
        "promote",
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
        "--server-group",
        "shop-v000",
        "--dry-run",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("promote plan"), "{stdout}");
    assert!(stdout.contains("server group: shop-v000"), "{stdout}");

    assert_eq!(
        writes_by(&server, "vigil-cli"),
        Vec::<String>::new(),
        "dry runs write nothing"
    );
    assert!(server
        .audit()
        .iter()
        .any(|a| a.user == "vigil-cli" && a.verb == Verb::List));
    assert_eq!(
        server.snapshot().objects,
        before,
        "the cluster is unchanged"
    );
}
