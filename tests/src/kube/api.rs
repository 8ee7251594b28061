//! The API server's HTTP surface: paths to resources, verbs to store operations, discovery.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::store::{ApiError, KINDS, Kind, ListOptions, Store, kind};

/// What the fake needs of a request.
pub struct ApiRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: HashMap<String, String>,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Where a path points.
enum Target<'a> {
    Discovery(Value),
    Collection { kind: &'static Kind, ns: Option<&'a str> },
    Item { kind: &'static Kind, ns: Option<&'a str>, name: &'a str, sub: Option<&'a str> },
}

/// Answers a request: the status code and the JSON body.
pub fn handle(store: &mut Store, now: DateTime<Utc>, request: &ApiRequest<'_>) -> (u16, Value) {
    let result = if dry_run(request) {
        // Everything checked and answered as for real, nothing kept.
        route(&mut store.clone(), now, request)
    } else {
        route(store, now, request)
    };
    match result {
        Ok((code, body)) => (code, body),
        Err(e) => (e.code, e.status()),
    }
}

/// `dryRun=All` in the query (writes) or in the DeleteOptions (deletes, evictions).
fn dry_run(request: &ApiRequest<'_>) -> bool {
    if request.method == "GET" {
        return false;
    }
    if request.query.get("dryRun").is_some_and(|d| d == "All") {
        return true;
    }
    let body: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
    let listed = |v: &Value| v.as_array().is_some_and(|d| d.iter().any(|x| x == "All"));
    listed(&body["dryRun"]) || listed(&body["deleteOptions"]["dryRun"])
}

fn route(store: &mut Store, now: DateTime<Utc>, request: &ApiRequest<'_>) -> Result<(u16, Value), ApiError> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let target = resolve(&segments).ok_or_else(ApiError::no_such_path)?;
    let method = request.method;
    let body_json = || -> Result<Value, ApiError> {
        if request.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(request.body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))
    };
    match target {
        Target::Discovery(doc) if method == "GET" => Ok((200, doc)),
        Target::Discovery(_) => Err(ApiError::method_not_allowed(method)),
        Target::Collection { kind, ns } => match method {
            "GET" => {
                if request.query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                    return Err(ApiError::bad_request("watch is not served by the fake API server"));
                }
                let options = ListOptions::parse(kind, &request.query)?;
                Ok((200, store.list(kind, ns, &options)))
            }
            "POST" => Ok((201, store.create(kind, ns, body_json()?, now, true)?)),
            other => Err(ApiError::method_not_allowed(other)),
        },
        Target::Item { kind, ns, name, sub: None } => match method {
            "GET" => Ok((200, store.get(kind, ns, name)?)),
            "PUT" => Ok((200, store.update(kind, ns, name, body_json()?, false)?)),
            "PATCH" => Ok((200, store.patch(kind, ns, name, request.content_type, request.body, false)?)),
            "DELETE" => {
                let mut options = body_json()?;
                if let Some(g) = request.query.get("gracePeriodSeconds").and_then(|g| g.parse::<i64>().ok()) {
                    options["gracePeriodSeconds"] = json!(g);
                }
                Ok((200, store.delete(kind, ns, name, &options, now)?))
            }
            other => Err(ApiError::method_not_allowed(other)),
        },
        Target::Item { kind, ns, name, sub: Some("status") } => match method {
            "GET" => Ok((200, store.get(kind, ns, name)?)),
            "PUT" => Ok((200, store.update(kind, ns, name, body_json()?, true)?)),
            "PATCH" => Ok((200, store.patch(kind, ns, name, request.content_type, request.body, true)?)),
            other => Err(ApiError::method_not_allowed(other)),
        },
        Target::Item { kind, ns: Some(ns), name, sub: Some("eviction") } if kind.plural == "pods" => match method {
            "POST" => Ok((201, store.evict(ns, name, &body_json()?, now)?)),
            other => Err(ApiError::method_not_allowed(other)),
        },
        Target::Item { .. } => Err(ApiError::no_such_path()),
    }
}

/// A watch's events now: the objects of the collection `path` names that changed after
/// `resourceVersion` (each as `MODIFIED`: the fake keeps no history, and an informer takes an
/// unknown object's update as an add), or with `sendInitialEvents=true` all of them and the
/// bookmark that ends a streaming list.
pub fn watch_events(store: &Store, path: &str, query: &HashMap<String, String>) -> Result<Vec<Value>, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let Some(Target::Collection { kind, ns }) = resolve(&segments) else {
        return Err(ApiError::no_such_path());
    };
    let options = ListOptions::parse(kind, query)?;
    let list = store.list(kind, ns, &options);
    let typed = |o: &Value| {
        let mut o = o.clone();
        o["apiVersion"] = json!(kind.api_version());
        o["kind"] = json!(kind.kind);
        o
    };
    if query.get("sendInitialEvents").is_some_and(|s| s == "true") {
        // A streaming list (client-go's WatchListClient): every object as ADDED, then a bookmark
        // that says the initial events are over.
        let mut events: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| json!({"type": "ADDED", "object": typed(o)}))
            .collect();
        events.push(json!({"type": "BOOKMARK", "object": {
            "kind": kind.kind, "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": list["metadata"]["resourceVersion"], "annotations": {"k8s.io/initial-events-end": "true"}},
        }}));
        return Ok(events);
    }
    let since: u64 = query.get("resourceVersion").and_then(|rv| rv.parse().ok()).unwrap_or(0);
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            o["metadata"]["resourceVersion"].as_str().and_then(|rv| rv.parse::<u64>().ok()).unwrap_or(0) > since
        })
        .map(|o| json!({"type": "MODIFIED", "object": typed(o)}))
        .collect())
}

/// The object a request writes by PUT or PATCH (itself or its status): its resource, namespace
/// and name; `None` for any other request.
pub fn written<'a>(method: &str, path: &'a str) -> Option<(&'static Kind, Option<&'a str>, &'a str)> {
    if method != "PUT" && method != "PATCH" {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match resolve(&segments)? {
        Target::Item { kind, ns, name, sub: None | Some("status") } => Some((kind, ns, name)),
        _ => None,
    }
}

fn resolve<'a>(segments: &[&'a str]) -> Option<Target<'a>> {
    let (group, version, rest): (&str, &str, &[&'a str]) = match *segments {
        ["version"] => return Some(Target::Discovery(version())),
        ["api"] => {
            return Some(Target::Discovery(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ));
        }
        ["apis"] => return Some(Target::Discovery(groups())),
        ["api", "v1", ref rest @ ..] => ("", "v1", rest),
        ["apis", g, v, ref rest @ ..] => (g, v, rest),
        ["apis", g] => return group(g).map(Target::Discovery),
        _ => return None,
    };
    let kind_in = |plural: &str| kind(plural).filter(|k| k.group == group && k.version == version);
    let (kind, ns, tail): (&'static Kind, Option<&'a str>, &[&'a str]) = match *rest {
        [] => {
            let resources = resources(group, version);
            return (!resources["resources"].as_array().is_none_or(Vec::is_empty))
                .then_some(Target::Discovery(resources));
        }
        ["namespaces", ns, plural, ref tail @ ..] => (kind_in(plural).filter(|k| k.namespaced)?, Some(ns), tail),
        [plural, ref tail @ ..] => {
            let kind = kind_in(plural)?;
            if kind.namespaced && !tail.is_empty() {
                return None;
            }
            (kind, None, tail)
        }
    };
    match *tail {
        [] => Some(Target::Collection { kind, ns }),
        [name] => Some(Target::Item { kind, ns, name, sub: None }),
        [name, sub] => Some(Target::Item { kind, ns, name, sub: Some(sub) }),
        _ => None,
    }
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "37", "emulationMajor": "1", "emulationMinor": "37",
        "gitVersion": "v1.37.0-fake", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-11-30T00:00:00Z", "goVersion": "go1.26",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn group_entry(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv], "preferredVersion": gv})
}

/// The named API groups the fake serves (the core group is `/api`).
const GROUPS: &[&str] = &["apps", "discovery.k8s.io", "policy", "rbac.authorization.k8s.io"];

fn groups() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group_entry(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group(name: &str) -> Option<Value> {
    GROUPS.contains(&name).then(|| {
        let mut g = group_entry(name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// The legacy (v1) discovery document of a group version: what kubectl falls back to when the
/// aggregated (v2) one is not offered, and what `CheckEvictionSupport` reads `pods/eviction` from.
fn resources(group: &str, version: &str) -> Value {
    let verbs = json!(["create", "delete", "get", "list", "patch", "update"]);
    let mut list = Vec::new();
    for k in KINDS.iter().filter(|k| k.group == group && k.version == version) {
        list.push(json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": verbs, "shortNames": k.short_names, "storageVersionHash": "",
        }));
        list.push(json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"]}));
        if k.plural == "pods" {
            list.push(json!({
                "name": "pods/eviction", "singularName": "", "namespaced": true,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"],
            }));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}
