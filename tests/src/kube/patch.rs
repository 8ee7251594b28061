//! The three patch formats the API server takes: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch for the fields spotkeeper and kubectl send (lists merged
//! by their Kubernetes merge keys, the `$patch`, `$setElementOrder`, `$retainKeys` and
//! `$deleteFromPrimitiveList` directives).

use serde_json::{Map, Value};

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(target) = target.as_object_mut() {
        for (k, v) in patch {
            if v.is_null() {
                target.remove(k);
            } else {
                merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902; the error says which operation failed and why.
pub fn json_patch(doc: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops.as_array().ok_or("a JSON patch must be a list of operations")?;
    let mut doc = doc.clone();
    for (i, op) in ops.iter().enumerate() {
        let kind = op.get("op").and_then(Value::as_str).ok_or(format!("operation {i}: no 'op'"))?;
        let path = op.get("path").and_then(Value::as_str).ok_or(format!("operation {i}: no 'path'"))?;
        let value = || op.get("value").cloned().ok_or(format!("operation {i} ({kind}): no 'value'"));
        match kind {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" | "copy" => {
                let from = op.get("from").and_then(Value::as_str).ok_or(format!("operation {i}: no 'from'"))?;
                let moved = if kind == "move" {
                    remove(&mut doc, from)?
                } else {
                    doc.pointer(from).cloned().ok_or(format!("{from}: not found"))?
                };
                add(&mut doc, path, moved)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed: test failed"));
                }
            }
            other => return Err(format!("unexpected kind: {other}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    if !path.starts_with('/') {
        return Err(format!("{path}: a JSON pointer starts with '/'"));
    }
    let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, key) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(key, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let at = if key == "-" {
                list.len()
            } else {
                key.parse::<usize>().map_err(|_| format!("{path}: not an index"))?
            };
            if at > list.len() {
                return Err(format!("add operation does not apply: doc is missing path: {path}"));
            }
            list.insert(at, value);
            Ok(())
        }
        _ => Err(format!("add operation does not apply: doc is missing path: \"{path}\": missing value")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\": missing value");
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&key).ok_or_else(missing),
        Some(Value::Array(list)) => {
            let at = key.parse::<usize>().map_err(|_| missing())?;
            if at >= list.len() {
                return Err(missing());
            }
            Ok(list.remove(at))
        }
        _ => Err(missing()),
    }
}

/// The merge key of a list field, by its path (pod-template paths folded onto the pod's), or
/// `Some("")` for a list of scalars merged as a set; `None` for lists replaced whole.
fn merge_key(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix("spec.template.").unwrap_or(path);
    Some(match path {
        "spec.containers" | "spec.initContainers" | "spec.ephemeralContainers" | "spec.volumes" => "name",
        "spec.containers.env" | "spec.initContainers.env" => "name",
        "spec.containers.ports" | "spec.initContainers.ports" => "containerPort",
        "spec.containers.volumeMounts" | "spec.initContainers.volumeMounts" => "mountPath",
        "metadata.ownerReferences" => "uid",
        "status.conditions" => "type",
        "status.addresses" => "type",
        "spec.imagePullSecrets" => "name",
        // A Service's ports.
        "spec.ports" => "port",
        "metadata.finalizers" => "",
        _ => return None,
    })
}

/// A strategic merge patch, applied.
pub fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, String> {
    merge_map(target, patch, "")
}

fn merge_map(target: &Value, patch: &Value, path: &str) -> Result<Value, String> {
    let Some(patch_map) = patch.as_object() else {
        return Ok(patch.clone());
    };
    match patch_map.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch_map.clone();
            replaced.remove("$patch");
            return Ok(Value::Object(replaced));
        }
        Some("delete") => return Ok(Value::Null),
        Some(other) => return Err(format!("unknown patch type: {other}")),
        None => {}
    }
    let mut out = target.as_object().cloned().unwrap_or_default();
    let mut retain: Option<Vec<String>> = None;
    for (key, value) in patch_map {
        let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        if key.starts_with("$setElementOrder/") {
            continue;
        }
        if key == "$retainKeys" {
            retain =
                Some(value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect());
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            let gone: Vec<&Value> = value.as_array().into_iter().flatten().collect();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|v| !gone.contains(&v));
            }
            continue;
        }
        if key.starts_with('$') {
            return Err(format!("unknown directive {key}"));
        }
        match value {
            Value::Null => {
                out.remove(key);
            }
            Value::Object(_) => {
                let merged = merge_map(out.get(key).unwrap_or(&Value::Null), value, &child)?;
                if merged.is_null() {
                    out.remove(key);
                } else {
                    out.insert(key.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = match merge_key(&child) {
                    Some(merge_key) => merge_list(out.get(key), items, merge_key, &child)?,
                    None => Value::Array(items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect()),
                };
                out.insert(key.clone(), merged);
            }
            scalar => {
                out.insert(key.clone(), scalar.clone());
            }
        }
    }
    if let Some(keep) = retain {
        out.retain(|k, _| keep.contains(k));
    }
    Ok(Value::Object(out))
}

fn merge_list(target: Option<&Value>, items: &[Value], key: &str, path: &str) -> Result<Value, String> {
    let mut out: Vec<Value> = target.and_then(Value::as_array).cloned().unwrap_or_default();
    if key.is_empty() {
        for item in items {
            if !out.contains(item) {
                out.push(item.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
        return Ok(Value::Array(items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect()));
    }
    for item in items {
        let id = item.get(key).ok_or(format!("map: {item} does not contain declared merge key: {key}"))?;
        let at = out.iter().position(|o| o.get(key) == Some(id));
        match (item.get("$patch").and_then(Value::as_str), at) {
            (Some("delete"), Some(at)) => {
                out.remove(at);
            }
            (Some("delete"), None) => {}
            (_, Some(at)) => out[at] = merge_map(&out[at], item, path)?,
            (_, None) => out.push(merge_map(&Value::Null, item, path)?),
        }
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_is_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut doc, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_is_rfc_6902() {
        let doc = json!({"spec": {"taints": [{"key": "a"}]}, "metadata": {"labels": {"x/y": "1"}}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/spec/taints/-", "value": {"key": "b"}},
                {"op": "replace", "path": "/metadata/labels/x~1y", "value": "2"},
                {"op": "test", "path": "/spec/taints/0/key", "value": "a"},
                {"op": "add", "path": "/spec/unschedulable", "value": true}
            ]),
        )
        .expect("applies");
        assert_eq!(out["spec"]["taints"], json!([{"key": "a"}, {"key": "b"}]));
        assert_eq!(out["metadata"]["labels"]["x/y"], "2");
        assert!(json_patch(&doc, &json!([{"op": "test", "path": "/spec/taints/0/key", "value": "z"}])).is_err());
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn strategic_merge_merges_lists_by_key() {
        let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "app", "image": "v1"}, {"name": "side", "image": "s"}], "tolerations": [{"key": "x"}]}});
        let out = strategic_merge(
            &pod,
            &json!({
                "metadata": {"finalizers": ["b"], "$deleteFromPrimitiveList/finalizers": ["a"]},
                "spec": {"$setElementOrder/containers": [{"name": "app"}], "containers": [{"name": "app", "image": "v2"}, {"name": "side", "$patch": "delete"}], "tolerations": [{"key": "y"}]}
            }),
        )
        .expect("applies");
        assert_eq!(out["spec"]["containers"], json!([{"name": "app", "image": "v2"}]));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "y"}]), "no merge key: replaced");
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }
}
