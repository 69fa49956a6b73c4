//! The manifests that run Vigil itself (`deploy/` at the repository root), parsed into the
//! Kubernetes API types (k8s-openapi checks each `apiVersion` and `kind`, and unknown shapes fail),
//! and checked against each other: what the Deployment mounts exists, the Service reaches its
//! ports, the RoleBinding binds the shipped Role to the ServiceAccount the pod runs as, and the
//! Role grants exactly the deployer's `rbac.yaml`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = deploy_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn every_manifest_parses_into_its_kubernetes_type_and_the_kustomization_lists_them_all() {
    #[derive(serde::Deserialize)]
    struct Kustomization {
        resources: Vec<String>,
    }
    let k: Kustomization = load("kustomization.yaml");
    let mut listed = k.resources.clone();
    listed.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    for f in &k.resources {
        // Each file is one object of the kind its name says.
        match f.as_str() {
            "serviceaccount.yaml" => drop(load::<ServiceAccount>(f)),
            "pvc.yaml" => drop(load::<PersistentVolumeClaim>(f)),
            "configmap.yaml" => drop(load::<ConfigMap>(f)),
            "deployment.yaml" => drop(load::<Deployment>(f)),
            "service.yaml" => drop(load::<Service>(f)),
            "role.yaml" => drop(load::<Role>(f)),
            "role-binding.yaml" => drop(load::<RoleBinding>(f)),
            other => panic!("{other}: no type to check it against"),
        }
    }
    // A wrong kind is refused by the types (the check above means something).
    let wrong = std::fs::read_to_string(deploy_dir().join("service.yaml")).unwrap();
    assert!(serde_saphyr::from_str::<Deployment>(&wrong).is_err());
}

#[test]
fn the_manifests_fit_together() {
    let sa: ServiceAccount = load("serviceaccount.yaml");
    let pvc: PersistentVolumeClaim = load("pvc.yaml");
    let cm: ConfigMap = load("configmap.yaml");
    let d: Deployment = load("deployment.yaml");
    let svc: Service = load("service.yaml");
    let role: Role = load("role.yaml");
    let rb: RoleBinding = load("role-binding.yaml");
    let ns = sa.metadata.namespace.clone().unwrap();
    for m in [&pvc.metadata, &cm.metadata, &d.metadata, &svc.metadata] {
        assert_eq!(m.namespace.as_deref(), Some(ns.as_str()));
    }

    let spec = d.spec.unwrap();
    // One writer on the store.
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    assert_eq!(
        pvc.spec.unwrap().access_modes.unwrap(),
        ["ReadWriteOnce".to_owned()]
    );
    let pod = spec.template.spec.unwrap();
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(spec.selector.match_labels.as_ref(), Some(&labels));
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert_eq!(args[0], "serve");
    // Every flag that names a file points into a mounted volume.
    let mounts = c.volume_mounts.clone().unwrap();
    let volumes = pod.volumes.clone().unwrap();
    for m in &mounts {
        assert!(
            volumes.iter().any(|v| v.name == m.name),
            "mount {} has no volume",
            m.name
        );
    }
    for flag in ["--data-dir=", "--tokens=", "--deployer-config="] {
        let path = args
            .iter()
            .find_map(|a| a.strip_prefix(flag))
            .unwrap_or_else(|| panic!("no {flag}"));
        assert!(
            mounts.iter().any(|m| path.starts_with(&m.mount_path)),
            "{flag}{path} is on no volume"
        );
    }
    let claim = volumes
        .iter()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(Some(&claim.claim_name), pvc.metadata.name.as_ref());
    let config = volumes.iter().find_map(|v| v.config_map.as_ref()).unwrap();
    assert_eq!(Some(&config.name), cm.metadata.name.as_ref());
    // The deployer config the pod reads is one the deployer accepts.
    let text = &cm.data.unwrap()["deployer.yaml"];
    let parsed = vigil_deployer::config::parse(text).unwrap();
    assert_eq!(parsed.cluster, "shop");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));

    // The Service selects the pods and reaches named container ports.
    let s = svc.spec.unwrap();
    assert_eq!(s.selector.as_ref(), Some(&labels));
    let port_names: Vec<String> = c
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|p| p.name)
        .collect();
    for p in s.ports.unwrap() {
        match p.target_port.unwrap() {
            IntOrString::String(n) => assert!(port_names.contains(&n), "{n}"),
            IntOrString::Int(n) => panic!("target port {n}: use the container port's name"),
        }
    }

    // The binding gives the Role to the pod's ServiceAccount, in the Role's namespace.
    assert_eq!(rb.role_ref.kind, "Role");
    assert_eq!(Some(&rb.role_ref.name), role.metadata.name.as_ref());
    assert_eq!(rb.metadata.namespace, role.metadata.namespace);
    let subject = &rb.subjects.unwrap()[0];
    assert_eq!(subject.kind, "ServiceAccount");
    assert_eq!(Some(&subject.name), sa.metadata.name.as_ref());
    assert_eq!(subject.namespace.as_deref(), Some(ns.as_str()));

    // The Role is the deployer's (deploy, promote, rollback), rule for rule.
    let shipped: Role = serde_saphyr::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rbac.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(role.rules, shipped.rules);
    assert!(role.rules.unwrap().iter().any(|r| r
        .resources
        .as_ref()
        .is_some_and(|x| x.contains(&"httproutes".to_owned()))
        && r.verbs.contains(&"update".to_owned())));
}
