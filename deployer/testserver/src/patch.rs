//! The patch formats the API accepts: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch and server-side apply. The last two are approximated: strategic merge
//! merges lists of objects by their `name` key (how containers, volumes and env lists merge),
//! and apply is a merge patch that creates the object when it is missing (field ownership is not
//! tracked).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

pub fn apply(target: &Value, patch: &Value, kind: PatchType) -> Result<Value, String> {
    match kind {
        PatchType::Merge | PatchType::Apply => Ok(merge(target, patch, false)),
        PatchType::Strategic => Ok(merge(target, patch, true)),
        PatchType::Json => json_patch(target, patch),
    }
}

fn merge(target: &Value, patch: &Value, strategic: bool) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = match (out.get(k), v, strategic) {
                        (Some(Value::Array(old)), Value::Array(new), true)
                            if is_named_list(old) && is_named_list(new) =>
                        {
                            merge_named_lists(old, new)
                        }
                        (Some(old), _, _) => merge(old, v, strategic),
                        (None, _, _) => merge(&Value::Null, v, strategic),
                    };
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn is_named_list(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|i| i["name"].is_string())
}

fn merge_named_lists(old: &[Value], new: &[Value]) -> Value {
    let mut out: Vec<Value> = old.to_vec();
    for item in new {
        let delete = item["$patch"] == "delete";
        match out.iter().position(|o| o["name"] == item["name"]) {
            Some(i) if delete => {
                out.remove(i);
            }
            Some(i) => out[i] = merge(&out[i], item, true),
            None if delete => {}
            None => out.push(item.clone()),
        }
    }
    Value::Array(out)
}

fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("operation without a path")?;
        match op["op"].as_str() {
            Some("add") => add(&mut doc, path, op["value"].clone())?,
            Some("remove") => {
                remove(&mut doc, path)?;
            }
            Some("replace") => {
                remove(&mut doc, path)?;
                add(&mut doc, path, op["value"].clone())?;
            }
            Some("test") => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test operation failed at {path}"));
                }
            }
            Some("move") => {
                let from = op["from"].as_str().ok_or("move without from")?;
                let v = remove(&mut doc, from)?;
                add(&mut doc, path, v)?;
            }
            Some("copy") => {
                let from = op["from"].as_str().ok_or("copy without from")?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("copy from missing path {from}"))?;
                add(&mut doc, path, v)?;
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(doc)
}

fn split_parent(path: &str) -> Result<(String, String), String> {
    let i = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_parent(path)?;
    let parent = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("missing parent for {path}"))?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| format!("bad array index in {path}"))?;
                if i > a.len() {
                    return Err(format!("array index out of range in {path}"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(format!("parent of {path} is not a container")),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_parent(path)?;
    let parent = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("missing parent for {path}"))?;
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(|| format!("no value at {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("bad array index in {path}"))?;
            if i >= a.len() {
                return Err(format!("array index out of range in {path}"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("parent of {path} is not a container")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Examples from RFC 7386 appendix A and RFC 6902 appendix A.
    #[test]
    fn merge_patch_rfc7386_examples() {
        let t = json!({"a":"b","c":{"d":"e","f":"g"}});
        let p = json!({"a":"z","c":{"f":null}});
        assert_eq!(
            apply(&t, &p, PatchType::Merge).unwrap(),
            json!({"a":"z","c":{"d":"e"}})
        );
        assert_eq!(
            apply(&json!({"a":["b"]}), &json!({"a":"c"}), PatchType::Merge).unwrap(),
            json!({"a":"c"})
        );
        assert_eq!(
            apply(&json!({"e":null}), &json!({"a":1}), PatchType::Merge).unwrap(),
            json!({"e":null,"a":1})
        );
    }

    #[test]
    fn json_patch_rfc6902_examples() {
        let t = json!({"foo":["bar","baz"]});
        let p = json!([{"op":"add","path":"/foo/1","value":"qux"}]);
        assert_eq!(
            apply(&t, &p, PatchType::Json).unwrap(),
            json!({"foo":["bar","qux","baz"]})
        );
        let p = json!([{"op":"test","path":"/foo/0","value":"nope"}]);
        assert!(apply(&t, &p, PatchType::Json).is_err());
        let t = json!({"foo":{"bar":"baz","waldo":"fred"},"qux":{"corge":"grault"}});
        let p = json!([{"op":"move","from":"/foo/waldo","path":"/qux/thud"}]);
        assert_eq!(
            apply(&t, &p, PatchType::Json).unwrap(),
            json!({"foo":{"bar":"baz"},"qux":{"corge":"grault","thud":"fred"}})
        );
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let t = json!({"containers":[{"name":"a","image":"1"},{"name":"b","image":"1"}]});
        let p = json!({"containers":[{"name":"b","image":"2"}]});
        assert_eq!(
            apply(&t, &p, PatchType::Strategic).unwrap(),
            json!({"containers":[{"name":"a","image":"1"},{"name":"b","image":"2"}]})
        );
        // A plain merge patch replaces the list.
        assert_eq!(
            apply(&t, &p, PatchType::Merge).unwrap(),
            json!({"containers":[{"name":"b","image":"2"}]})
        );
    }
}
