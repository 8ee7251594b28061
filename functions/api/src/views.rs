//! What operators look at: the dashboard page, every managed instance, a group's history page
//! by page, and the savings.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};
use spotkeeper::decisions::savings;
use spotkeeper::domain::{Day, GroupName};

use crate::Api;
use crate::body::StrictQuery;
use crate::changes;
use crate::groups;
use crate::reply::ApiError;

type Reply = Result<(StatusCode, Json<Value>), ApiError>;

/// The dashboard: one self-contained page (no CDN); it asks for the API token itself.
pub(crate) async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

/// Every managed instance across groups, with its market, pool and since when.
pub(crate) async fn instances(State(api): State<Arc<Api>>) -> Reply {
    let deps = &api.deps;
    let groups = deps.store.groups().await?;
    let members = futures::future::try_join_all(groups.iter().map(|g| deps.store.members(&g.name))).await?;
    let list: Vec<Value> = groups
        .iter()
        .zip(&members)
        .flat_map(|(g, members)| {
            members.iter().map(move |m| {
                json!({
                    "group": g.name, "instance_id": m.instance_id, "market": m.market, "instance_type": m.instance_type,
                    "availability_zone": m.availability_zone, "subnet_id": m.subnet_id, "state": m.state,
                    "launched_at": m.launched_at, "since": m.launched_at, "fallen_back": m.fallen_back,
                })
            })
        })
        .collect();
    Ok((StatusCode::OK, Json(json!({ "instances": list }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A group's history, newest first, a page at a time (`next_cursor` continues it).
pub(crate) async fn events(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    StrictQuery(page): StrictQuery<Page>,
) -> Reply {
    let deps = &api.deps;
    let name = groups::find(deps, name).await?.name;
    let limit = match page.limit.as_deref() {
        None => 20,
        Some(text) => text
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "must be 1-100"))?,
    };
    let after = match page.cursor.as_deref() {
        None => None,
        Some(cursor) => {
            let bad = || ApiError::invalid("cursor", "not a cursor this API gave out: pass next_cursor as it came");
            let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
            let sk = String::from_utf8(raw).map_err(|_| bad())?;
            Some(sk).filter(|s| s.starts_with("EVENT#")).ok_or_else(bad)?.into()
        }
    };
    let (entries, next) = deps.store.history_page(&name, limit, after.as_deref()).await?;
    let next_cursor = next.map(|sk| URL_SAFE_NO_PAD.encode(sk));
    Ok((StatusCode::OK, Json(json!({"events": changes::readable(entries), "next_cursor": next_cursor}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
    pub group: Option<String>,
}

fn day(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{text:?} is not a date YYYY-MM-DD")))
}

/// Spot and On-Demand hours, cost, what On-Demand would have cost, savings, interruptions and
/// fallbacks, per group and in total, and per day; by default the last 30 days.
pub(crate) async fn savings(State(api): State<Arc<Api>>, StrictQuery(period): StrictQuery<Period>) -> Reply {
    let deps = &api.deps;
    let today = deps.clock.now().date_naive();
    let to = period.to.as_deref().map(|t| day("to", t)).transpose()?.unwrap_or(today);
    let from = period.from.as_deref().map(|f| day("from", f)).transpose()?.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(ApiError::invalid("from", "must not be after to"));
    }
    if to - from > Duration::days(366) {
        return Err(ApiError::invalid("from", "the period may span at most 366 days"));
    }
    let groups: Vec<GroupName> = match &period.group {
        Some(name) => vec![groups::find(deps, name.clone()).await?.name],
        None => deps.store.groups().await?.into_iter().map(|g| g.name).collect(),
    };
    let (from, to) = (Day::from(from), Day::from(to));
    let ledgers = futures::future::try_join_all(groups.iter().map(|g| deps.store.ledger(g, from, to))).await?;
    let by_group: BTreeMap<String, Vec<spotkeeper::domain::LedgerDay>> =
        groups.iter().map(GroupName::to_string).zip(ledgers).collect();
    let mut answer = savings::summary(&by_group);
    answer["from"] = json!(from);
    answer["to"] = json!(to);
    Ok((StatusCode::OK, Json(answer)))
}
