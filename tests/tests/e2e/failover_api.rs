//! Fargate failover through the `api` function: a Deployment failed over and taken back by
//! hand on the fake API server, a refused one, and requests that change nothing. What happened
//! is read back from the fake, the table, the history and the alerts.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use spotkeeper::domain::{ClusterName, WorkloadState};
use spotkeeper_tests::kube::FakeKube;
use spotkeeper_tests::{Harness, TOKEN};

use super::failover::{
    LABEL, alerts_of, follow_until, follow_until_of, on_fargate, opted_in, patches_of, record, record_of, warned_node,
};

/// `POST /groups/workers/workloads/<namespace>/<deployment>/<action>` with the token.
async fn ask(h: &Harness, namespace: &str, deployment: &str, action: &str) -> (StatusCode, Value) {
    let path = format!("/groups/workers/workloads/{namespace}/{deployment}/{action}");
    h.call(Method::POST, &path, Some(TOKEN), None).await
}

/// The `workers` group's failovers as `GET /groups/workers/workloads` answers them.
async fn listed(h: &Harness) -> Vec<Value> {
    let (status, answer) = h.call(Method::GET, "/groups/workers/workloads", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["workloads"].as_array().cloned().expect("a list")
}

fn annotations(fake: &FakeKube, name: &str) -> Value {
    fake.get("deployments", Some("shop"), name).expect("the Deployment")["metadata"]["annotations"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_fails_over_through_the_api_once_and_the_table_and_its_annotations_agree() {
    let (h, fake, _, _, _) = warned_node().await;
    // Nothing failed over yet: the opted-in Deployments as the cluster has them, on Spot.
    let shown = listed(&h).await;
    let names: Vec<(&str, &str)> =
        shown.iter().map(|w| (w["workload"].as_str().unwrap_or("?"), w["state"].as_str().unwrap_or("?"))).collect();
    assert_eq!(names, [("shop/logs", "spot"), ("shop/web", "spot")], "{shown:?}");
    assert!(shown.iter().all(|w| w["since"].is_null() && w["failed_attempts"] == 0), "{shown:?}");

    let (status, done) = ask(&h, "shop", "web", "failover").await;
    assert_eq!((status, done), (StatusCode::OK, json!({"outcome": "patched", "workload": "shop/web"})));
    let (status, again) = ask(&h, "shop", "web", "failover").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!((again["outcome"].as_str(), again["state"].as_str()), (Some("already"), Some("failing-over")));
    assert_eq!(patches_of(&fake, "web"), 1, "patched once for two requests");

    let kept = record(&h, &fake).await;
    assert_eq!((kept.state, kept.reason.as_str()), (WorkloadState::FailingOver, "asked through the API"));
    let on = annotations(&fake, "web");
    assert_eq!(
        (on["spotkeeper.io/state"].as_str(), on["spotkeeper.io/reason"].as_str()),
        (Some("failing-over"), Some("asked through the API"))
    );
    let d = fake.get("deployments", Some("shop"), "web").expect("web");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"][LABEL.0], LABEL.1);

    let settled = follow_until(&h, &fake, WorkloadState::Fargate, 10).await;
    assert_eq!(annotations(&fake, "web")["spotkeeper.io/state"], "fargate");
    let shown = listed(&h).await;
    assert_eq!(shown.len(), 2, "web and logs: {shown:?}");
    let web = shown.iter().find(|w| w["workload"] == "shop/web").expect("web");
    assert_eq!((web["workload"].as_str(), web["state"].as_str()), (Some("shop/web"), Some("fargate")), "{web}");
    assert_eq!((web["reason"].as_str(), web["failed_attempts"].as_u64()), (Some("asked through the API"), Some(0)));
    for field in ["since", "next_attempt", "migrated_at"] {
        assert!(web[field].is_string(), "{field}: {web}");
    }
    assert!(web["last_recovered_at"].is_null(), "{web}");
    let next = settled.next_attempt.expect("a way back planned");
    assert_eq!(web["next_attempt"], json!(next), "the table's, as it is");

    let failed_over = h.history("workers", "workload-failed-over").await;
    assert!(failed_over.len() == 1 && failed_over[0].contains("asked through the API"), "{failed_over:?}");
    assert_eq!(alerts_of(&h.sns_alerts().await, "workload-failed-over"), 1);

    // The cluster refusing us: the table's failovers still listed, and why the rest are not.
    fake.revoke_credentials(spotkeeper_tests::kube::ACCESS_KEY);
    let (status, answer) = h.call(Method::GET, "/groups/workers/workloads", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["cluster_error"].is_string(), "{answer}");
    let shown: Vec<&str> =
        answer["workloads"].as_array().into_iter().flatten().filter_map(|w| w["workload"].as_str()).collect();
    assert_eq!(shown, ["shop/web"], "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_cannot_run_on_fargate_is_refused_with_its_reasons_and_nothing_is_patched() {
    let (h, fake, _, _, _) = warned_node().await;
    let (status, refused) = ask(&h, "shop", "logs", "failover").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let error = &refused["error"];
    assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("workload_refused"), Some("deployment")));
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("shop/logs cannot run on Fargate") && message.contains("hostPath"), "{message}");
    assert_eq!(patches_of(&fake, "logs"), 0);
    assert_eq!(record_of(&h, &fake, "logs").await.state, WorkloadState::Refused);
    let shown = listed(&h).await;
    let states: Vec<&str> = shown.iter().map(|w| w["state"].as_str().unwrap_or("?")).collect();
    assert_eq!(states, ["refused", "spot"], "logs refused, web never moved: {shown:?}");
    let told = h.history("workers", "workload-refused").await;
    assert!(told.len() == 1 && told[0].contains("hostPath"), "{told:?}");

    // Outside the failover's namespaces, and gone: neither is patched.
    let (status, outside) = ask(&h, "default", "web", "failover").await;
    assert_eq!(
        (status, outside["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("outside_failover"))
    );
    let (status, gone) = ask(&h, "shop", "nope", "failover").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    assert!(gone["error"]["message"].as_str().is_some_and(|m| m.contains("shop/nope")), "{gone}");
    assert_eq!(fake.requests().iter().filter(|r| r.method == "PATCH").count(), 0, "nothing patched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_goes_back_to_spot_by_hand_before_its_cooldown_one_per_cluster() {
    let (h, fake, spot, before) = on_fargate().await;
    opted_in(&fake, "cart", 1, |_| {});
    let (status, done) = ask(&h, "shop", "cart", "failover").await;
    assert_eq!(status, StatusCode::OK, "{done}");
    follow_until_of(&h, &fake, "cart", WorkloadState::Fargate, 10).await;
    let due = record(&h, &fake).await.next_attempt.expect("a way back planned");
    assert!(spotkeeper::clock::Clock::now(h.clock.as_ref()) < due, "still in its cooldown");

    let (status, started) = ask(&h, "shop", "web", "recover").await;
    assert_eq!((status, started), (StatusCode::OK, json!({"outcome": "started", "workload": "shop/web"})));
    assert_eq!(record(&h, &fake).await.state, WorkloadState::Recovering);
    let (status, busy) = ask(&h, "shop", "cart", "recover").await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert!(
        busy["error"]["message"].as_str().is_some_and(|m| m.contains("shop/web")),
        "names the one on its way: {busy}"
    );
    assert_eq!(record_of(&h, &fake, "cart").await.state, WorkloadState::Fargate, "cart stays");

    let back = follow_until(&h, &fake, WorkloadState::Spot, 5).await;
    assert!(back.last_recovered_at.is_some(), "{back:?}");
    let d = fake.get("deployments", Some("shop"), "web").expect("web");
    assert_eq!(d["spec"]["template"], before["spec"]["template"], "its saved selectors restored exactly");
    assert_eq!(d["metadata"]["annotations"]["spotkeeper.io/state"], "spot");
    assert!(d["metadata"]["annotations"].get("spotkeeper.io/saved-placement").is_none());
    assert!(fake.pods_on(&spot).iter().any(|p| p.contains("/web-")), "{:?}", fake.pods_on(&spot));
    assert_eq!(h.history("workers", "workload-recovery-started").await.len(), 1);
    assert_eq!(h.history("workers", "workload-recovered").await.len(), 1);

    // On Spot now: nothing to take back.
    let patches = patches_of(&fake, "web");
    let (status, again) = ask(&h, "shop", "web", "recover").await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["error"]["message"].as_str().is_some_and(|m| m.contains("not on Fargate")), "{again}");
    assert_eq!(patches_of(&fake, "web"), patches, "not patched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_calls_without_the_token_change_nothing() {
    let (h, fake, _, _, _) = warned_node().await;
    let long = "a".repeat(64);
    let cases = [
        ("Shop", "web", "namespace"),
        ("-shop", "web", "namespace"),
        (long.as_str(), "web", "namespace"),
        ("shop", "Web", "deployment"),
        ("shop", "web_1", "deployment"),
        ("shop", "web%2Fx", "deployment"),
    ];
    for action in ["failover", "recover"] {
        for (namespace, deployment, field) in cases {
            let (status, answer) = ask(&h, namespace, deployment, action).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{namespace}/{deployment} {action}: {answer}");
            let error = &answer["error"];
            assert_eq!((error["code"].as_str(), error["field"].as_str()), (Some("invalid_path"), Some(field)));
            assert!(error["message"].as_str().is_some_and(|m| m.contains("is not a")), "{answer}");
        }
    }
    let paths = [
        "/groups/workers/workloads",
        "/groups/workers/workloads/shop/web/failover",
        "/groups/workers/workloads/shop/web/recover",
    ];
    for (i, path) in paths.iter().enumerate() {
        let method = if i == 0 { Method::GET } else { Method::POST };
        for token in [None, Some("not-this-deployments-token")] {
            let (status, answer) = h.call(method.clone(), path, token, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        }
    }
    let (status, _) = h.call(Method::GET, "/groups/nope/workloads", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(fake.requests().iter().filter(|r| r.method == "PATCH").count(), 0, "nothing patched");
    let cluster = ClusterName::try_from(fake.cluster.clone()).expect("a cluster name");
    assert_eq!(h.deps.store.workloads(&cluster).await.expect("read"), Vec::new(), "nothing recorded");
    assert_eq!(h.history("workers", "workload-failed-over").await, Vec::<String>::new());
}
