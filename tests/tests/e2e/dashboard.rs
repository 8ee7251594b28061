//! The dashboard in a real browser: headless Chromium opens the page the `api` function serves
//! (on a loopback port, the emulator behind it), signs in with the token, and shows the fleet,
//! the timeline and the savings. A screenshot is kept at target/dashboard.png.

use std::process::Command;

use axum::http::Method;
use chrono::Duration;
use serde_json::json;
use spotkeeper_tests::emulator::workspace_root;
use spotkeeper_tests::{Harness, TOKEN, events};

fn chromium() -> String {
    for candidate in ["chromium", "/usr/bin/chromium", "chromium-browser"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate.to_string();
        }
    }
    panic!("Chromium is not installed: `make test` installs it (apt-get install chromium)");
}

fn browse(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("spotkeeper-chromium-{}-{}", std::process::id(), extra.len()));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
        ])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--window-size=1280,1800",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("Chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `$1,234.56`, as the page writes money.
fn dollars(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("${grouped}.{:02}", cents % 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_the_timeline_and_the_savings() {
    let h = Harness::start().await;
    // Two members launched on Spot and one On-Demand instance adopted; the Auto Scaling group's
    // members are all On-Demand (the emulator's ASGs launch On-Demand only).
    let by_hand = h.run_by_hand().await;
    let web =
        h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).capacity(3).adopting(&[&by_hand]).register().await;
    let (_, workers) = h.register_workers().await;
    let ids: Vec<String> = [&web, &workers]
        .iter()
        .flat_map(|g| g["members"].as_array().unwrap().iter().map(|m| m["instance_id"].as_str().unwrap().to_string()))
        .collect();
    for id in &ids {
        h.instance_state(events::state_change(id, "running")).await.unwrap();
    }
    // A day of the fleet running, in the ledger.
    h.scheduled(None).await.unwrap();
    for _ in 0..6 {
        h.clock.advance(Duration::hours(4));
        h.scheduled(None).await.unwrap();
    }
    let (_, savings) = h.call(Method::GET, "/savings", Some(TOKEN), None).await;
    let total = savings["total"]["savings"].as_f64().unwrap();
    assert!(total > 0.0, "{savings}");
    // A policy change, webhook secret and all.
    let secret = "whsec_dashboard_0123456789";
    let patch = json!({"fallback": false, "webhooks": [{"url": "http://127.0.0.1:9/hook", "secret": secret, "allow_loopback_http": true}]});
    let (status, changed) = h.patch("web", patch).await;
    assert_eq!(status.as_u16(), 200, "{changed}");

    let (url, _server) = h.serve_api().await;
    let page = format!("{url}/#token={TOKEN}");
    let dom = tokio::task::spawn_blocking(move || browse(&page, &["--dump-dom"])).await.unwrap();
    for id in &ids {
        assert!(dom.contains(&format!("data-instance=\"{id}\"")), "the fleet shows {id}:\n{dom}");
    }
    assert!(
        dom.contains("data-kind=\"instance-state\"") && dom.contains("data-kind=\"group-registered\""),
        "the timeline"
    );
    // What each group runs on comes from its members' markets, not from "no fallback recorded".
    let group = |name: &str| {
        let start = format!("<article class=\"group\" data-group=\"{name}\">");
        dom.split(start.as_str())
            .nth(1)
            .and_then(|rest| rest.split("</article>").next())
            .unwrap_or_default()
            .to_string()
    };
    let (web_card, workers_card) = (group("web"), group("workers"));
    assert!(
        web_card.contains("data-status=\"mixed\"") && web_card.contains("Mixed: 2 Spot, 1 On-Demand"),
        "web runs on both markets:\n{web_card}"
    );
    assert!(
        workers_card.contains("data-status=\"on-demand\"") && workers_card.contains("<strong>On-Demand</strong>"),
        "the Auto Scaling group's members are all On-Demand:\n{workers_card}"
    );
    assert!(!dom.contains(">On Spot<"), "no group is all Spot");
    // The policy change reads as a one-line diff; the secret is nowhere.
    let change =
        dom.split("data-kind=\"policy-changed\"").nth(1).and_then(|li| li.split("</li>").next()).unwrap_or_default();
    assert!(change.contains("policy changed: fallback: on → off; webhooks: 1 added"), "the diff:\n{change}");
    assert!(!change.contains('{') && !dom.contains(secret), "no JSON dump, no secret:\n{change}");
    let savings_total = dom.split("id=\"savings-total\"").nth(1).expect("a savings total");
    assert!(
        savings_total[..savings_total.len().min(2000)].contains(&dollars(total)),
        "the savings figure {} is shown",
        dollars(total)
    );
    assert!(
        dom.contains("id=\"savings-chart\"")
            && dom.split("id=\"savings-chart\"").nth(1).is_some_and(|c| c.contains("<svg")),
        "a chart"
    );
    assert!(!dom.contains("id=\"login-box\" hidden=\"\"") || dom.contains("data-instance"), "signed in");

    // Without the token the page asks for it, and shows no data.
    let bare = format!("{url}/");
    let dom = tokio::task::spawn_blocking(move || browse(&bare, &["--dump-dom"])).await.unwrap();
    assert!(dom.contains("id=\"login\"") && !dom.contains("data-instance=\"i-"), "the sign-in form, no data");

    let shot = workspace_root().join("target");
    std::fs::create_dir_all(&shot).unwrap();
    let shot = shot.join("dashboard.png");
    let page = format!("{url}/#token={TOKEN}");
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || browse(&page, &[&arg])).await.unwrap();
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000), "a screenshot at {}", shot.display());
}
