//! Outgoing webhooks against a local receiver: signed deliveries that verify, three attempts
//! for a receiver that fails (recorded in the history), and addresses refused.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use spotkeeper_tests::{Harness, Receiver, TOKEN, events};

const SECRET: &str = "whsec_0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_and_recorded() {
    let h = Harness::start().await;
    let id = h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).online().await.remove(0);
    let good = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.answer(500);
    let (status, patched) = h.patch(
        "web",
        json!({"webhooks": [
            {"url": format!("{}/hooks/spotkeeper", good.url), "secret": SECRET, "events": ["interrupted", "replaced"], "allow_loopback_http": true},
            {"url": format!("{}/down", failing.url), "secret": SECRET, "events": ["interrupted"], "allow_loopback_http": true},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["policy"]["webhooks"][0]["secret"], "***", "secrets are never shown");
    let (_, listed) = h.call(Method::GET, "/groups", Some(TOKEN), None).await;
    assert!(!listed.to_string().contains(SECRET));

    let out = h.spot_interruption(events::spot_warning(&id)).await.unwrap();
    let new = out["replacement"].as_str().unwrap().to_string();
    h.instance_state(events::state_change(&new, "running")).await.unwrap();

    let received = good.received();
    let kinds: Vec<String> = received
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["interrupted", "replaced"], "only the events asked for");
    for delivery in &received {
        let header = delivery.headers.get("spotkeeper-signature").and_then(|v| v.to_str().ok());
        let now = chrono::Utc::now();
        spotkeeper::domain::signature::verify(SECRET.as_bytes(), header, delivery.body.as_bytes(), now)
            .expect("the signature verifies");
        let payload: Value = serde_json::from_str(&delivery.body).unwrap();
        assert!(payload["id"].as_str().unwrap().starts_with("evt_") && payload["at"].is_string(), "{payload}");
        assert_eq!(payload["group"], "web");
    }
    let interrupted: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(interrupted["facts"]["replacement"], new.as_str());
    assert_eq!(failing.received().len(), 3, "three attempts");

    let (_, events) = h.call(Method::GET, "/groups/web/events?limit=100", Some(TOKEN), None).await;
    let log: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap().to_string(), e["message"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(log.iter().filter(|(k, _)| k == "webhook-delivered").count(), 2, "{log:?}");
    let failed: Vec<&(String, String)> = log.iter().filter(|(k, _)| k == "webhook-failed").collect();
    assert_eq!(failed.len(), 1, "{log:?}");
    assert!(failed[0].1.contains("3 attempt") && failed[0].1.contains("500"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_addresses_are_refused() {
    let h = Harness::start().await;
    h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).online().await;
    for (hook, why) in [
        (json!({"url": "http://hooks.example.com/x", "secret": SECRET}), "plain http"),
        (json!({"url": "https://169.254.169.254/latest/meta-data", "secret": SECRET}), "metadata"),
        (json!({"url": "https://10.1.2.3/x", "secret": SECRET}), "private"),
        (json!({"url": "http://127.0.0.1:9/x", "secret": SECRET}), "loopback without the setting"),
        (json!({"url": "https://hooks.example.com/x", "secret": "short"}), "short secret"),
        (json!({"url": "https://hooks.example.com/x", "secret": SECRET, "events": ["everything"]}), "unknown event"),
        (json!({"url": "https://hooks.example.com/x", "secret": SECRET, "colour": "red"}), "unknown field"),
    ] {
        let (status, err) = h.patch("web", json!({"webhooks": [hook]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {err}");
        assert!(err["error"]["field"].as_str().unwrap().starts_with("webhooks"), "{why}: {err}");
    }
    let web = h.group("web").await;
    assert!(web["policy"].get("webhooks").is_none(), "nothing was set: {web}");
    let (status, _) = h
        .patch("web", json!({"webhooks": [{"url": "https://10.1.2.3/x", "secret": SECRET, "allow_private": true}]}))
        .await;
    assert_eq!(status, StatusCode::OK, "allowed when asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_a_failed_delivery_and_never_followed() {
    let h = Harness::start().await;
    let id = h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).online().await.remove(0);
    // Where a receiver would send the signed delivery: a server that records whether it was hit.
    let inside = Receiver::start().await;
    let (found, temporary) = (Receiver::start().await, Receiver::start().await);
    found.redirect(302, &format!("{}/latest/meta-data/", inside.url));
    temporary.redirect(307, &format!("{}/latest/meta-data/", inside.url));
    let (status, patched) = h.patch(
        "web",
        json!({"webhooks": [
            {"url": format!("{}/found", found.url), "secret": SECRET, "events": ["interrupted"], "allow_loopback_http": true},
            {"url": format!("{}/temporary", temporary.url), "secret": SECRET, "events": ["interrupted"], "allow_loopback_http": true},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");

    h.spot_interruption(events::spot_warning(&id)).await.unwrap();

    assert!(inside.received().is_empty(), "the redirect was followed: {:?}", inside.received());
    assert_eq!(found.received().len(), 1, "a redirect is an answer: no second attempt");
    assert_eq!(temporary.received().len(), 1);
    let failed = h.history("web", "webhook-failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    for code in ["302", "307"] {
        assert!(
            failed.iter().any(|m| m.contains(code) && m.contains("redirects are not followed")),
            "{code}: {failed:?}"
        );
    }
    assert!(h.history("web", "webhook-delivered").await.is_empty());
}
