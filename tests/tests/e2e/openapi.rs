//! openapi.yaml describes the API exactly: every route it documents answers with a status it
//! documents, it documents every route the API has, and an undocumented method is a 405.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;
use spotkeeper_tests::emulator::workspace_root;
use spotkeeper_tests::{Harness, TOKEN, WEBHOOK_SECRET, events};

fn document() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("openapi.yaml");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

fn operations(doc: &Yaml) -> Vec<(String, String, BTreeSet<u16>)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, op) in item.as_mapping().into_iter().flatten() {
            let method = method.as_str().unwrap_or_default().to_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let codes = op["responses"]
                .as_mapping()
                .into_iter()
                .flatten()
                .filter_map(|(c, _)| c.as_str().and_then(|c| c.parse().ok()))
                .collect();
            found.push((method, path.as_str().unwrap_or_default().to_string(), codes));
        }
    }
    found
}

#[test]
fn the_document_lists_exactly_the_routes_the_api_serves() {
    let documented: BTreeSet<(String, String)> = operations(&document()).into_iter().map(|(m, p, _)| (m, p)).collect();
    let served: BTreeSet<(String, String)> = api::ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, served, "openapi.yaml and api::ROUTES differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented() {
    let h = Harness::start().await;
    let body = h.standalone("web").types(&["m5.large"]).subnets(&[h.fleet.subnet_a.as_str()]).body();
    let spare = h.run_by_hand().await;
    let hook = json!({"instance_id": "i-0fffffffffffffff0", "path": "/data", "used_percent": 90.0});
    // A request for each route; it runs once with the token (or signature) and once without.
    let requests: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/".into(), None),
        ("GET", "/healthz".into(), None),
        ("POST", "/groups".into(), Some(body.clone())),
        ("GET", "/groups".into(), None),
        ("GET", "/groups/web".into(), None),
        ("PATCH", "/groups/web".into(), Some(json!({"fallback": true}))),
        ("POST", "/groups/web/instances".into(), Some(json!({"instance_id": spare}))),
        ("POST", "/groups/web/rollback".into(), None),
        ("GET", "/groups/web/events".into(), None),
        ("GET", "/groups/web/workloads".into(), None),
        ("POST", "/groups/web/workloads/shop/api/failover".into(), None),
        ("POST", "/groups/web/workloads/shop/api/recover".into(), None),
        ("GET", "/instances".into(), None),
        ("GET", "/savings".into(), None),
        ("POST", "/hooks/volume".into(), Some(hook.clone())),
        ("POST", "/hooks/alertmanager".into(), Some(events::load("alertmanager-disk-full.json"))),
        ("DELETE", "/groups/web".into(), None),
    ];
    let ops = operations(&document());
    let documented = |method: &str, path: &str| {
        let template = path.replace("/web", "/{name}").replace("/shop/api/", "/{namespace}/{deployment}/");
        ops.iter()
            .find(|(m, p, _)| m == method && *p == template)
            .map_or_else(|| panic!("{method} {path} is not documented"), |(_, _, codes)| codes.clone())
    };
    for (method, path, body) in &requests {
        let codes = documented(method, path);
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (status, answer) = if path == "/hooks/volume" {
            let raw = hook.to_string().into_bytes();
            let signature = spotkeeper::domain::signature::sign(
                WEBHOOK_SECRET.as_bytes(),
                spotkeeper::clock::Clock::now(h.clock.as_ref()),
                &raw,
            );
            h.call_raw(m.clone(), path, &[("spotkeeper-signature", &signature)], raw).await
        } else {
            h.call(m.clone(), path, Some(TOKEN), body.clone()).await
        };
        assert!(codes.contains(&status.as_u16()), "{method} {path} answered {status}, documented {codes:?}: {answer}");
        if status.is_client_error() || status.is_server_error() {
            assert!(answer["error"]["message"].is_string(), "{method} {path}: the error shape: {answer}");
        }
        let (status, _) = h.call(m, path, None, body.clone()).await;
        assert!(
            codes.contains(&status.as_u16()),
            "{method} {path} without credentials answered {status}, documented {codes:?}"
        );
    }
    // An undocumented method on a documented path is a 405; an undocumented path, a 404.
    for (_, path, _) in &ops {
        let concrete = path.replace("{name}", "web").replace("{namespace}", "shop").replace("{deployment}", "api");
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if ops.iter().any(|(m, p, _)| m == method && p == path) {
                continue;
            }
            let (status, answer) =
                h.call(Method::from_bytes(method.as_bytes()).unwrap(), &concrete, Some(TOKEN), None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}: {answer}");
        }
    }
    for path in ["/admin", "/groups/web/members", "/metrics", "/openapi.yaml"] {
        let (status, answer) = h.call(Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
        assert!(answer["error"]["message"].is_string());
    }
    // Strict query parameters and oversized bodies answer in the same JSON shape.
    let (status, answer) = h.call(Method::GET, "/savings?colour=red", Some(TOKEN), None).await;
    assert_eq!((status, answer["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("colour")));
    let huge = json!({"name": "x".repeat(70_000)});
    for (method, path) in [(Method::POST, "/groups"), (Method::PATCH, "/groups/web"), (Method::POST, "/hooks/volume")] {
        let (status, answer) = h.call(method.clone(), path, Some(TOKEN), Some(huge.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large")),
            "{method} {path}"
        );
    }
}
