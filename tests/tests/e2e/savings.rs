//! The savings ledger over a simulated day, history page by page, and every managed instance —
//! against the emulator, moving time with the test clock.

use axum::http::{Method, StatusCode};
use chrono::Duration;
use serde_json::{Value, json};
use spotkeeper_tests::proxy::Fault;
use spotkeeper_tests::{Harness, TOKEN, events, messages_of};

/// The Price List API's answer for one instance type, as AWS sends it (its entries are JSON
/// documents inside a JSON array).
fn price_list(instance_type: &str, usd: f64) -> String {
    let entry = json!({
        "product": {"productFamily": "Compute Instance", "attributes": {"instanceType": instance_type, "regionCode": "us-east-1", "operatingSystem": "Linux"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {"ABCD.JRTCKXETXF": {"priceDimensions": {"ABCD.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": format!("{usd:.10}")}, "description": format!("${usd} per On Demand Linux {instance_type} Instance Hour")
        }}}}}
    });
    json!({"FormatVersion": "aws_v1", "PriceList": [entry.to_string()]}).to_string()
}

/// The Price List API answers through the proxy, with these On-Demand prices.
fn answer_prices(h: &Harness, od: [(&'static str, f64); 2]) {
    h.proxy.on(move |call| {
        (call.operation == "GetProducts").then(|| {
            let asked = instance_type_asked(&call.body).unwrap_or_default();
            let usd = od.iter().find(|(t, _)| *t == asked).map_or(1.0, |(_, p)| *p);
            Fault::answer(200, "application/x-amz-json-1.1", price_list(&asked, usd))
        })
    });
}

fn instance_type_asked(body: &str) -> Option<String> {
    let request: Value = serde_json::from_str(body).ok()?;
    request["Filters"].as_array()?.iter().find(|f| f["Field"] == "instanceType")?["Value"].as_str().map(str::to_string)
}

async fn spot_price(h: &Harness, instance_type: &str, zone: &str) -> f64 {
    let out = h
        .ec2()
        .describe_spot_price_history()
        .instance_types(instance_type.into())
        .product_descriptions("Linux/UNIX")
        .send()
        .await
        .unwrap();
    out.spot_price_history()
        .iter()
        .find(|p| p.availability_zone() == Some(zone))
        .or(out.spot_price_history().first())
        .and_then(|p| p.spot_price())
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_spot_and_on_demand_is_in_the_ledger_and_the_savings() {
    let h = Harness::start().await;
    // The Price List API (out of the emulator's reach) answers through the proxy.
    let od = [("m5.large", 0.096), ("m5a.large", 0.086)];
    answer_prices(&h, od);
    let ids = h.standalone("web").subnets(&[h.fleet.subnet_a.as_str()]).capacity(2).online().await;
    // One member falls back to On-Demand: an interruption with no Spot capacity anywhere.
    h.no_spot_capacity();
    let out = h.spot_interruption(events::spot_warning(&ids[0])).await.unwrap();
    let on_demand = out["replacement"].as_str().unwrap().to_string();
    h.proxy.clear_rules();
    answer_prices(&h, od);
    h.instance_state(events::state_change(&on_demand, "running")).await.unwrap();
    h.ec2().terminate_instances().instance_ids(&ids[0]).send().await.unwrap();
    h.instance_state(events::state_change(&ids[0], "terminated")).await.unwrap();

    // Recovery would move the On-Demand member back to Spot during the day: not today.
    let (status, _) = h.patch("web", json!({"recovery": {"cooldown": "7d"}})).await;
    assert_eq!(status, StatusCode::OK);
    // A simulated day, the next one: the schedule runs every hour from 00:30 (the ledger starts
    // counting at the first run).
    h.clock.set(h.clock_midnight() + Duration::days(1) + Duration::minutes(30));
    h.scheduled(None).await.unwrap();
    h.proxy.forget_calls();
    for _ in 0..23 {
        h.clock.advance(Duration::hours(1));
        let run = h.scheduled(None).await.unwrap();
        assert!(run["savings"].is_array(), "{run}");
    }
    assert_eq!(h.proxy.count("DescribeSpotPriceHistory"), 23, "one Spot price call a run, for every pool");
    assert_eq!(h.proxy.count("GetProducts"), 0, "On-Demand prices were cached for the day at the first run");

    let web = h.group("web").await;
    let spot_member = web["members"].as_array().unwrap().iter().find(|m| m["market"] == "spot").unwrap().clone();
    let od_member = web["members"].as_array().unwrap().iter().find(|m| m["market"] == "on-demand").unwrap().clone();
    let spot_type = spot_member["instance_type"].as_str().unwrap();
    let od_type = od_member["instance_type"].as_str().unwrap();
    let list = |t: &str| od.iter().find(|(k, _)| *k == t).unwrap().1;
    let spot = spot_price(&h, spot_type, spot_member["availability_zone"].as_str().unwrap()).await;
    let expected_cost = 23.0 * spot + 23.0 * list(od_type);
    let expected_od = 23.0 * list(spot_type) + 23.0 * list(od_type);

    // The day before holds the interruption and the fallback; the simulated day the hours.
    let day = h.clock_midnight().format("%Y-%m-%d").to_string();
    let before = (h.clock_midnight() - Duration::days(1)).format("%Y-%m-%d").to_string();
    let (status, savings) = h.call(Method::GET, &format!("/savings?from={before}&to={day}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK, "{savings}");
    let total = &savings["total"];
    assert!((total["spot_hours"].as_f64().unwrap() - 23.0).abs() < 0.05, "{savings}");
    assert!((total["on_demand_hours"].as_f64().unwrap() - 23.0).abs() < 0.05, "{savings}");
    assert!((total["cost"].as_f64().unwrap() - expected_cost).abs() < 0.02, "{savings} vs {expected_cost}");
    assert!((total["on_demand_cost"].as_f64().unwrap() - expected_od).abs() < 0.02, "{savings} vs {expected_od}");
    assert!((total["savings"].as_f64().unwrap() - (expected_od - expected_cost)).abs() < 0.02, "{savings}");
    let percent = (expected_od - expected_cost) / expected_od * 100.0;
    assert!((total["savings_percent"].as_f64().unwrap() - percent).abs() < 0.1, "{savings}");
    assert_eq!((total["interruptions"].as_u64(), total["fallbacks"].as_u64()), (Some(1), Some(1)), "{savings}");
    assert_eq!(savings["groups"][0]["group"], "web");
    let days: Vec<&str> = savings["days"].as_array().unwrap().iter().map(|d| d["day"].as_str().unwrap()).collect();
    assert_eq!(days, vec![before.as_str(), day.as_str()]);
    // Per group filter, bad input.
    let (status, _) = h.call(Method::GET, &format!("/savings?group=nope&from={day}&to={day}"), Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = h.call(Method::GET, "/savings?from=2026-11-30&to=2026-11-01", Some(TOKEN), None).await;
    assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
    let (status, err) = h.call(Method::GET, "/savings?from=yesterday", Some(TOKEN), None).await;
    assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_and_instances_list_every_member() {
    let h = Harness::start().await;
    let (_, workers) = h.register_workers().await;
    let ids: Vec<String> =
        workers["members"].as_array().unwrap().iter().map(|m| m["instance_id"].as_str().unwrap().to_string()).collect();
    for id in &ids {
        h.instance_state(events::state_change(id, "running")).await.unwrap();
        h.instance_state(events::state_change(id, "stopping")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/groups/workers/events?limit=2&cursor={c}"),
            None => "/groups/workers/events?limit=2".to_string(),
        };
        let (status, page) = h.call(Method::GET, &path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(events.len() <= 2);
        seen.extend(events.iter().map(|e| e["at"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "registration, two states for each of two members: {seen:?}");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    for (path, field) in [
        ("/groups/workers/events?limit=0", "limit"),
        ("/groups/workers/events?cursor=!!", "cursor"),
        ("/groups/workers/events?colour=red", ""),
    ] {
        let (status, err) = h.call(Method::GET, path, Some(TOKEN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
        if !field.is_empty() {
            assert_eq!(err["error"]["field"], field);
        }
    }
    let (status, _) = h.call(Method::GET, "/groups/nope/events", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, list) = h.call(Method::GET, "/instances", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> =
        list["instances"].as_array().unwrap().iter().map(|i| i["instance_id"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 2);
    assert!(ids.iter().all(|id| listed.contains(&id.as_str())));
    assert!(list["instances"].as_array().unwrap().iter().all(|i| i["group"] == "workers" && i["since"].is_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_s_own_on_demand_prices_are_what_the_ledger_uses() {
    let h = Harness::start().await;
    // The Price List API has its price; the group sets another, far from it.
    answer_prices(&h, [("m5.large", 0.096), ("m5a.large", 0.086)]);
    h.standalone("web").types(&["m5.large"]).subnets(&[h.fleet.subnet_a.as_str()]).capacity(1).online().await;
    let prices = json!({"on_demand_prices": {"m5.large": 2.5}});
    let (status, view) = h.patch("web", prices).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["policy"]["on_demand_prices"], json!({"m5.large": 2.5}), "{view}");

    // Bad prices are a 400 naming the field, and change nothing.
    for (bad, field) in [
        (json!({"m5.large": 0}), "on_demand_prices.m5.large"),
        (json!({"m5.large": -0.1}), "on_demand_prices.m5.large"),
        (json!({"m5.large": "cheap"}), "on_demand_prices.m5.large"),
        (json!({"not a type": 1.0}), "on_demand_prices"),
    ] {
        let patch = json!({"on_demand_prices": bad, "fallback": false});
        let (status, err) = h.patch("web", patch).await;
        assert_eq!((status, err["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{bad}: {err}");
    }
    let shown = h.group("web").await;
    assert_eq!(shown["policy"]["on_demand_prices"], json!({"m5.large": 2.5}), "{shown}");
    assert_eq!(shown["policy"]["fallback"], true, "the refused patches changed nothing: {shown}");
    assert_eq!(
        messages_of(&shown["recent_events"], "policy-changed"),
        vec!["policy changed: on_demand_prices.m5.large: unset → 2.5"]
    );

    // Ten hours of the Spot member, counted the next day.
    h.clock.set(h.clock_midnight() + Duration::days(1) + Duration::minutes(30));
    h.scheduled(None).await.unwrap();
    h.clock.advance(Duration::hours(10));
    h.scheduled(None).await.unwrap();
    let day = h.clock_midnight().format("%Y-%m-%d").to_string();
    let (_, savings) = h.call(Method::GET, &format!("/savings?from={day}&to={day}"), Some(TOKEN), None).await;
    let total = &savings["total"];
    assert!((total["spot_hours"].as_f64().unwrap() - 10.0).abs() < 0.05, "{savings}");
    assert!((total["on_demand_cost"].as_f64().unwrap() - 25.0).abs() < 0.02, "the group's price, not 0.096: {savings}");
    let member = &shown["members"][0];
    let spot = spot_price(&h, "m5.large", member["availability_zone"].as_str().unwrap()).await;
    assert!((total["cost"].as_f64().unwrap() - 10.0 * spot).abs() < 0.02, "{savings}");
}
