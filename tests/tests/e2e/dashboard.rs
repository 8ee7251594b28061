//! The dashboard in a real browser: headless Chromium opens the page the `api` function serves
//! (on a loopback port, the emulator behind it), signs in with the token, and shows the fleet,
//! the timeline and the savings. A screenshot is kept at target/dashboard.png.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::Method;
use chrono::Duration;
use serde_json::json;
use spotkeeper_tests::emulator::workspace_root;
use spotkeeper_tests::{Harness, TOKEN, events};

/// The browser: `CHROMIUM` when set (`make test` sets it to the one it found or installed), else
/// the usual names on PATH.
fn chromium() -> String {
    let chosen = std::env::var("CHROMIUM").ok().filter(|c| !c.is_empty());
    let usual = ["chromium", "/usr/bin/chromium", "chromium-browser", "google-chrome"].map(String::from);
    for candidate in chosen.into_iter().chain(usual) {
        if Command::new(&candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate;
        }
    }
    panic!("no Chromium found: set CHROMIUM=/path/to/chromium, or let `make browser` install Debian's");
}

fn browse(url: &str, extra: &[&str]) -> String {
    // A profile of its own: browsers of tests running at once must not share one.
    static BROWSERS: AtomicUsize = AtomicUsize::new(0);
    let n = BROWSERS.fetch_add(1, Ordering::Relaxed);
    let profile = std::env::temp_dir().join(format!("spotkeeper-chromium-{}-{n}", std::process::id()));
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
    // The page's own rounding: to the cent, of amounts far inside i64.
    #[allow(clippy::cast_possible_truncation)]
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

/// A group's card in the page.
fn card(dom: &str, name: &str) -> String {
    let start = format!("<article class=\"group\" data-group=\"{name}\">");
    dom.split(start.as_str()).nth(1).and_then(|rest| rest.split("</article>").next()).unwrap_or_default().to_string()
}

/// A row of a table in `html`, from the attribute that starts it to its end.
fn row<'a>(html: &'a str, start: &str) -> &'a str {
    html.split(start).nth(1).and_then(|r| r.split("</tr>").next()).unwrap_or_default()
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
        let console = format!(
            "href=\"https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1#InstanceDetails:instanceId={id}\""
        );
        assert!(dom.contains(&console), "{id} links to the EC2 console:\n{dom}");
    }
    let metas: Vec<&str> =
        dom.split("class=\"group-meta\">").skip(1).filter_map(|m| m.split("</div>").next()).collect();
    assert!(metas.len() == 2 && metas.iter().all(|m| !m.contains("version")), "no internal version: {metas:?}");
    assert!(
        dom.contains("data-kind=\"instance-state\"") && dom.contains("data-kind=\"group-registered\""),
        "the timeline"
    );
    // What each group runs on comes from its members' markets, not from "no fallback recorded".
    let (web_card, workers_card) = (card(&dom, "web"), card(&dom, "workers"));
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

/// A page on the dashboard's origin that opens it in a frame, as an operator: it measures the
/// timeline (nothing hidden inside its box), presses "Roll back image" on `group` (answering the
/// confirmation), and writes what the page then says into `#report`.
fn driver(group: &str) -> String {
    r##"<!doctype html><html><body><pre id="report">waiting</pre>
<iframe id="f" src="/#token=TOKEN" style="width:1280px;height:2400px"></iframe>
<script>
const report = (o) => { document.getElementById("report").textContent = JSON.stringify(o); };
const f = document.getElementById("f");
function until(ready, then, tries) {
  const found = ready();
  if (found) return then(found);
  if (tries <= 0) return report({ error: "the page never got there" });
  setTimeout(() => until(ready, then, tries - 1), 50);
}
f.addEventListener("load", () => {
  const w = f.contentWindow, d = f.contentDocument;
  w.confirm = () => true;
  until(() => d.querySelectorAll("#timeline li").length && d.querySelector('.actions[data-group="GROUP"] button'), (button) => {
    const ol = d.querySelector("#timeline ol");
    const items = d.querySelectorAll("#timeline li");
    const last = items[items.length - 1].getBoundingClientRect();
    const box = d.querySelector("#timeline").getBoundingClientRect();
    const timeline = { entries: items.length, hidden: ol.scrollHeight - ol.clientHeight, last_inside: last.bottom <= box.bottom };
    button.click();
    until(() => {
      const r = d.querySelector('.actions[data-group="GROUP"] .action-result');
      return r && /^(Refused|Rolled back)/.test(r.textContent) && r;
    }, (r) => report({ timeline, result: r.textContent, class: r.className }), 200);
  }, 200);
});
</script></body></html>"##
        .replace("TOKEN", TOKEN)
        .replace("GROUP", group)
}

/// What the driver page wrote into `#report`.
fn report(dom: &str) -> serde_json::Value {
    let text = dom.split("<pre id=\"report\">").nth(1).and_then(|r| r.split("</pre>").next()).unwrap_or_default();
    let text = text.replace("&quot;", "\"").replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|_| json!({"unreadable": text}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_acts_from_the_page_and_a_refused_token_is_said_to_be_refused() {
    let h = Harness::start().await;
    let subnet = h.fleet.subnet_a.clone();
    h.standalone("web").types(&["m5.large"]).subnets(&[&subnet]).capacity(1).online().await;
    // A timeline longer than a screen: each policy change is one entry.
    for i in 0..16 {
        let patch = json!({"fallback": i % 2 == 1});
        let (status, changed) = h.patch("web", patch).await;
        assert_eq!(status.as_u16(), 200, "{changed}");
    }
    let (_, before) = h.call(Method::GET, "/groups/web", Some(TOKEN), None).await;
    let page = driver("web");
    let beside =
        axum::Router::new().route("/drive", axum::routing::get(move || async move { axum::response::Html(page) }));
    let (url, _server) = h.serve_api_beside(beside).await;

    // The action goes through the API's route and its checks: a group with no image history has
    // nothing to roll back to, and the page says so in the API's words; nothing changed.
    let drive = format!("{url}/drive");
    let dom = tokio::task::spawn_blocking(move || browse(&drive, &["--dump-dom"])).await.unwrap();
    let told = report(&dom);
    let result = told["result"].as_str().unwrap_or_default();
    assert!(result.starts_with("Refused: POST /groups/web/rollback: 409"), "{told}");
    assert_eq!(told["class"], "action-result refused", "{told}");
    assert!(told["timeline"]["entries"].as_u64().unwrap_or_default() >= 17, "{told}");
    assert_eq!(told["timeline"]["hidden"], 0, "no timeline entry hidden inside its box: {told}");
    assert_eq!(told["timeline"]["last_inside"], true, "the last entry is inside the timeline: {told}");
    let (_, after) = h.call(Method::GET, "/groups/web", Some(TOKEN), None).await;
    assert_eq!(before["members"], after["members"], "a refused rollback changes nothing");
    assert_eq!(h.history("web", "rollback").await, Vec::<String>::new());

    // A wrong token: the page says it was refused, not how to send one.
    let wrong = format!("{url}/#token=not-this-deployments-token");
    let dom = tokio::task::spawn_blocking(move || browse(&wrong, &["--dump-dom"])).await.unwrap();
    let said = dom.split("id=\"login-message\"").nth(1).and_then(|m| m.split("</p>").next()).unwrap_or_default();
    assert!(said.contains("The token was refused (401: the API token sent was refused"), "{said}");
    assert!(!said.contains("send the API token as"), "{said}");
    assert!(!dom.contains("data-instance=\"i-"), "no data behind a refused token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_view_shows_its_failed_over_deployments_beside_its_fleet() {
    // `web` failed over on a warning and settled on Fargate; `logs` refused (a hostPath volume).
    let (h, _fake, _, _) = super::failover::on_fargate().await;
    let (_, listed) = h.call(Method::GET, "/groups/workers/workloads", Some(TOKEN), None).await;
    let web = listed["workloads"]
        .as_array()
        .and_then(|l| l.iter().find(|w| w["workload"] == "shop/web").cloned())
        .expect("web's failover");

    let (url, _server) = h.serve_api().await;
    let page = format!("{url}/#token={TOKEN}");
    let dom = tokio::task::spawn_blocking(move || browse(&page, &["--dump-dom"])).await.unwrap();
    let workers = card(&dom, "workers");
    assert!(workers.contains("data-instance=\"i-"), "the fleet:\n{workers}");
    assert!(workers.contains("Fargate failover: shop"), "its failover block:\n{workers}");
    let on = row(&workers, "data-workload=\"shop/web\"");
    assert!(on.contains("data-state=\"fargate\""), "web on Fargate:\n{workers}");
    let reason = web["reason"].as_str().expect("a reason");
    assert!(reason.contains("Spot interruption warning") && on.contains(reason), "why:\n{on}");
    assert!(on.contains(&format!("datetime=\"{}\"", web["since"].as_str().expect("since"))), "since:\n{on}");
    let next = web["next_attempt"].as_str().expect("a way back planned");
    assert!(on.contains(&format!("datetime=\"{next}\"")), "the next attempt:\n{on}");
    assert!(on.contains("<td class=\"num attempts\">0</td>"), "attempts:\n{on}");
    let refused = row(&workers, "data-workload=\"shop/logs\"");
    assert!(refused.contains("data-state=\"refused\"") && refused.contains("hostPath"), "logs refused:\n{refused}");
    assert!(!dom.contains(TOKEN) && !dom.contains("k8s-aws-v1."), "no token in the page");
}
