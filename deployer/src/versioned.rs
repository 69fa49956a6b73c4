//! Versioned ConfigMaps and Secrets. Deploying a server group copies each ConfigMap/Secret its pod
//! template uses to `name-vNNN` (reusing the latest copy when the content is unchanged) and points
//! the template at the copy, so a rollback to an older group also restores its exact
//! configuration. Old copies beyond the history limit are deleted, but never one a server group
//! still references. Secret copies are enumerated from marker ConfigMaps
//! ([`secret_marker_name`]), never by listing Secrets, so the Role needs no `list` on Secrets.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec, Secret};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    pub fn plural(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmaps",
            ConfigKind::Secret => "secrets",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigRef {
    pub kind: ConfigKind,
    pub name: String,
}

/// `shop-config-v003` → `("shop-config", 3)`. Versions have at least three digits.
pub fn split_version(name: &str) -> Option<(&str, u32)> {
    let (base, v) = name.rsplit_once("-v")?;
    if base.is_empty() || v.len() < 3 || !v.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((base, v.parse().ok()?))
}

pub fn versioned_name(base: &str, version: u32) -> String {
    format!("{base}-v{version:03}")
}

/// Every ConfigMap/Secret name a pod template references: volumes (and projected sources),
/// `envFrom`, and `env[].valueFrom` of all containers and init containers.
pub fn config_refs(template: &PodTemplateSpec) -> BTreeSet<ConfigRef> {
    let mut out = BTreeSet::new();
    if let Some(spec) = &template.spec {
        visit_refs(spec, &mut |kind, name: &mut String| {
            out.insert(ConfigRef {
                kind,
                name: name.clone(),
            });
        });
    }
    out
}

/// Rewrites references by `(kind, old name) → new name`.
pub fn rewrite_refs(template: &mut PodTemplateSpec, map: &BTreeMap<ConfigRef, String>) {
    if let Some(spec) = template.spec.as_mut() {
        visit_refs_mut(spec, &mut |kind, name: &mut String| {
            if let Some(new) = map.get(&ConfigRef {
                kind,
                name: name.clone(),
            }) {
                *name = new.clone();
            }
        });
    }
}

fn visit_refs(spec: &PodSpec, f: &mut dyn FnMut(ConfigKind, &mut String)) {
    let mut copy = spec.clone();
    visit_refs_mut(&mut copy, f);
}

fn visit_refs_mut(spec: &mut PodSpec, f: &mut dyn FnMut(ConfigKind, &mut String)) {
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = v.config_map.as_mut() {
            f(ConfigKind::ConfigMap, &mut cm.name);
        }
        if let Some(s) = v.secret.as_mut() {
            if let Some(n) = s.secret_name.as_mut() {
                f(ConfigKind::Secret, n);
            }
        }
        if let Some(p) = v.projected.as_mut() {
            for src in p.sources.iter_mut().flatten() {
                if let Some(cm) = src.config_map.as_mut() {
                    f(ConfigKind::ConfigMap, &mut cm.name);
                }
                if let Some(s) = src.secret.as_mut() {
                    f(ConfigKind::Secret, &mut s.name);
                }
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for c in containers {
        for e in c.env_from.iter_mut().flatten() {
            if let Some(cm) = e.config_map_ref.as_mut() {
                f(ConfigKind::ConfigMap, &mut cm.name);
            }
            if let Some(s) = e.secret_ref.as_mut() {
                f(ConfigKind::Secret, &mut s.name);
            }
        }
        for e in c.env.iter_mut().flatten() {
            if let Some(vf) = e.value_from.as_mut() {
                if let Some(k) = vf.config_map_key_ref.as_mut() {
                    f(ConfigKind::ConfigMap, &mut k.name);
                }
                if let Some(k) = vf.secret_key_ref.as_mut() {
                    f(ConfigKind::Secret, &mut k.name);
                }
            }
        }
    }
}

/// Names referenced by any Deployment or ReplicaSet in the namespace.
pub async fn referenced_by_groups(cluster: &Cluster) -> Result<BTreeSet<ConfigRef>> {
    let lp = ListParams::default();
    let deployments = cluster.api::<Deployment>();
    let replicasets = cluster.api::<ReplicaSet>();
    let mut refs = BTreeSet::new();
    for d in cluster
        .call("list deployments", || deployments.list(&lp))
        .await?
        .items
    {
        if let Some(spec) = d.spec {
            refs.extend(config_refs(&spec.template));
        }
    }
    for r in cluster
        .call("list replicasets", || replicasets.list(&lp))
        .await?
        .items
    {
        if r.spec.as_ref().is_some_and(|s| s.replicas == Some(0))
            && owned_by_deployment(&r.metadata)
        {
            // An old revision of a Deployment at 0 replicas is history, not a server group.
            continue;
        }
        if let Some(t) = r.spec.and_then(|s| s.template) {
            refs.extend(config_refs(&t));
        }
    }
    Ok(refs)
}

fn owned_by_deployment(meta: &ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Deployment")
}

/// Deletes each candidate no server group references; returns what was deleted.
pub async fn delete_unreferenced(
    cluster: &Cluster,
    candidates: &BTreeSet<ConfigRef>,
) -> Result<Vec<ConfigRef>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let used = referenced_by_groups(cluster).await?;
    let mut deleted = Vec::new();
    for r in candidates.iter().filter(|r| !used.contains(r)) {
        if delete_config(cluster, r).await? {
            deleted.push(r.clone());
        }
    }
    Ok(deleted)
}

async fn delete_config(cluster: &Cluster, r: &ConfigRef) -> Result<bool> {
    let dp = DeleteParams::default();
    let what = format!("delete {}/{}", r.kind.plural(), r.name);
    let gone = match r.kind {
        ConfigKind::ConfigMap => {
            let api = cluster.api::<ConfigMap>();
            cluster
                .call_opt(&what, || api.delete(&r.name, &dp))
                .await?
                .is_some()
        }
        ConfigKind::Secret => {
            let api = cluster.api::<Secret>();
            let gone = cluster
                .call_opt(&what, || api.delete(&r.name, &dp))
                .await?
                .is_some();
            // The marker goes after the copy, so no copy is ever left without one.
            let markers = cluster.api::<ConfigMap>();
            let marker = secret_marker_name(&r.name);
            cluster
                .call_opt(&format!("delete configmaps/{marker}"), || {
                    markers.delete(&marker, &dp)
                })
                .await?;
            gone
        }
    };
    Ok(gone)
}

/// The label of the ConfigMap marker recorded for each versioned Secret copy.
pub const SECRET_COPY_LABEL: &str = "vigil.dev/secret-copy";

/// The marker ConfigMap of Secret copy `copy`. It holds no secret value, only which copy of
/// which Secret exists, so the deployer can enumerate its copies with a label-selected `list` on
/// ConfigMaps instead of `list` on Secrets. It is created before the copy and deleted after it:
/// a crash in between leaves a marker whose Secret is missing (re-used or deleted later), never
/// a copy no marker names.
pub fn secret_marker_name(copy: &str) -> String {
    format!("{copy}.secret-copy")
}

/// Versions of Secret `base` recorded by markers, ascending.
async fn secret_copies(cluster: &Cluster, base: &str) -> Result<Vec<(u32, String)>> {
    let api = cluster.api::<ConfigMap>();
    let lp = ListParams::default().labels(&format!("{SECRET_COPY_LABEL}=true"));
    let mut v: Vec<(u32, String)> = cluster
        .call("list configmaps (secret copy markers)", || api.list(&lp))
        .await?
        .items
        .into_iter()
        .filter_map(|m| {
            let data = m.data?;
            let copy = data.get("copy")?.clone();
            (data.get("secret").map(String::as_str) == Some(base))
                .then(|| split_version(&copy).map(|(_, n)| (n, copy.clone())))
                .flatten()
        })
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Records the marker of a Secret copy (an existing marker is fine: a crash left it).
async fn record_secret_copy(cluster: &Cluster, base: &str, copy: &str) -> Result<()> {
    let api = cluster.api::<ConfigMap>();
    let marker = ConfigMap {
        metadata: ObjectMeta {
            name: Some(secret_marker_name(copy)),
            labels: Some([(SECRET_COPY_LABEL.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        data: Some(
            [
                ("secret".to_string(), base.to_string()),
                ("copy".to_string(), copy.to_string()),
            ]
            .into(),
        ),
        immutable: Some(true),
        ..Default::default()
    };
    let pp = PostParams::default();
    match cluster
        .call(
            &format!("create configmaps/{}", secret_marker_name(copy)),
            || api.create(&pp, &marker),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(crate::Error::Api {
            source: kube::Error::Api(s),
            ..
        }) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Existing versions of `base`, ascending.
async fn versions(cluster: &Cluster, kind: ConfigKind, base: &str) -> Result<Vec<(u32, String)>> {
    let lp = ListParams::default();
    let names: Vec<String> = match kind {
        ConfigKind::ConfigMap => {
            let api = cluster.api::<ConfigMap>();
            cluster
                .call("list configmaps", || api.list(&lp))
                .await?
                .items
                .into_iter()
                .filter_map(|c| c.metadata.name)
                .collect()
        }
        ConfigKind::Secret => {
            // Secrets are never listed (the Role has no `list` on them: it would read every
            // Secret's value in the namespace); their copies are enumerated from the markers.
            return secret_copies(cluster, base).await;
        }
    };
    let mut v: Vec<(u32, String)> = names
        .into_iter()
        .filter_map(|n| {
            split_version(&n)
                .filter(|(b, _)| *b == base)
                .map(|(_, v)| (v, n.clone()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Publishes a versioned copy of ConfigMap/Secret `base` and returns its name: the latest
/// existing copy if its content equals the source, otherwise a new `base-vNNN`.
pub async fn publish(cluster: &Cluster, r: &ConfigRef) -> Result<String> {
    let existing = versions(cluster, r.kind, &r.name).await?;
    match r.kind {
        ConfigKind::ConfigMap => {
            let api = cluster.api::<ConfigMap>();
            let src = cluster
                .call_opt(&format!("get configmaps/{}", r.name), || api.get(&r.name))
                .await?
                .ok_or_else(|| cluster.not_found("configmaps", &r.name))?;
            if let Some((_, latest)) = existing.last() {
                let l = cluster
                    .call(&format!("get configmaps/{latest}"), || api.get(latest))
                    .await?;
                if l.data == src.data && l.binary_data == src.binary_data {
                    return Ok(latest.clone());
                }
            }
            let name = versioned_name(&r.name, existing.last().map_or(0, |(v, _)| v + 1));
            let copy = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: src.metadata.labels.clone(),
                    ..Default::default()
                },
                data: src.data.clone(),
                binary_data: src.binary_data.clone(),
                immutable: Some(true),
            };
            let pp = PostParams::default();
            cluster
                .call(&format!("create configmaps/{name}"), || {
                    api.create(&pp, &copy)
                })
                .await?;
            Ok(name)
        }
        ConfigKind::Secret => {
            let api = cluster.api::<Secret>();
            let src = cluster
                .call_opt(&format!("get secrets/{}", r.name), || api.get(&r.name))
                .await?
                .ok_or_else(|| cluster.not_found("secrets", &r.name))?;
            let mut next = existing.last().map_or(0, |(v, _)| v + 1);
            if let Some((v, latest)) = existing.last() {
                match cluster
                    .call_opt(&format!("get secrets/{latest}"), || api.get(latest))
                    .await?
                {
                    Some(l)
                        if l.data == src.data
                            && l.string_data == src.string_data
                            && l.type_ == src.type_ =>
                    {
                        return Ok(latest.clone());
                    }
                    Some(_) => {}
                    // A marker whose copy was never created (a crash in between): reuse it.
                    None => next = *v,
                }
            }
            let name = versioned_name(&r.name, next);
            record_secret_copy(cluster, &r.name, &name).await?;
            let copy = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: src.metadata.labels.clone(),
                    ..Default::default()
                },
                data: src.data.clone(),
                string_data: src.string_data.clone(),
                type_: src.type_.clone(),
                immutable: Some(true),
            };
            let pp = PostParams::default();
            cluster
                .call(&format!("create secrets/{name}"), || api.create(&pp, &copy))
                .await?;
            Ok(name)
        }
    }
}

/// Publishes versioned copies of every unversioned ConfigMap/Secret the template references and
/// rewrites the template to use them.
pub async fn version_template(
    cluster: &Cluster,
    template: &mut PodTemplateSpec,
) -> Result<BTreeMap<ConfigRef, String>> {
    let mut map = BTreeMap::new();
    for r in config_refs(template) {
        if split_version(&r.name).is_none() {
            let v = publish(cluster, &r).await?;
            map.insert(r, v);
        }
    }
    rewrite_refs(template, &map);
    Ok(map)
}

/// Deletes versions of each base beyond the newest `keep`, skipping any still referenced.
pub async fn collect_garbage(
    cluster: &Cluster,
    bases: &BTreeSet<ConfigRef>,
    keep: usize,
) -> Result<Vec<ConfigRef>> {
    let used = referenced_by_groups(cluster).await?;
    let mut deleted = Vec::new();
    for base in bases {
        let all = versions(cluster, base.kind, &base.name).await?;
        let old = all.len().saturating_sub(keep);
        for (_, name) in all.into_iter().take(old) {
            let r = ConfigRef {
                kind: base.kind,
                name,
            };
            if !used.contains(&r) && delete_config(cluster, &r).await? {
                deleted.push(r);
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_need_three_digits() {
        assert_eq!(split_version("shop-config-v003"), Some(("shop-config", 3)));
        assert_eq!(split_version("shop-v1"), None);
        assert_eq!(split_version("-v001"), None);
        assert_eq!(split_version("shop-v0x1"), None);
        assert_eq!(versioned_name("a", 12), "a-v012");
    }

    #[test]
    fn every_reference_kind_is_found_and_rewritten() {
        let mut t: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {
                "volumes": [
                    {"name": "a", "configMap": {"name": "cfg"}},
                    {"name": "b", "secret": {"secretName": "creds"}},
                    {"name": "c", "projected": {"sources": [{"configMap": {"name": "proj"}}, {"secret": {"name": "psec"}}]}},
                ],
                "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-sec"}}]}],
                "containers": [{"name": "web",
                    "envFrom": [{"configMapRef": {"name": "envcfg"}}],
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "keycfg", "key": "x"}}},
                            {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "keysec", "key": "y"}}}]}],
            }
        }))
        .unwrap();
        let refs = config_refs(&t);
        let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["cfg", "envcfg", "keycfg", "proj", "creds", "init-sec", "keysec", "psec"]
        );
        let map: BTreeMap<ConfigRef, String> = refs
            .iter()
            .map(|r| (r.clone(), format!("{}-v000", r.name)))
            .collect();
        rewrite_refs(&mut t, &map);
        let after: Vec<String> = config_refs(&t).into_iter().map(|r| r.name).collect();
        assert!(after.iter().all(|n| n.ends_with("-v000")), "{after:?}");
        assert_eq!(after.len(), 8);
    }
}
