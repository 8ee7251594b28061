//! `?watch=true`, as a long poll: the changes since the client's resourceVersion, or after two
//! seconds of none an empty stream that ends (client-go's reflector then watches again from the
//! same version). Enough for `kubectl rollout status`, which waits on a watch while the test
//! moves the fake's clock.

use std::collections::HashMap;
use std::time::Duration;

use super::{Inner, api, lock};

/// Whether a query asks for a watch.
pub(super) fn requested(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes()).any(|(k, v)| k == "watch" && (v == "true" || v == "1"))
}

/// The status and the body: newline-separated watch events.
pub(super) async fn answer(inner: &Inner, path: &str, query: Option<&str>) -> (u16, String) {
    let query: HashMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let wait = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(2), |t| Duration::from_secs(t).min(Duration::from_secs(2)));
    let started = tokio::time::Instant::now();
    loop {
        let events = {
            let now = inner.clock.now();
            let mut store = lock(&inner.store);
            store.settle(now);
            api::watch_events(&store, path, &query)
        };
        match events {
            Err(e) => return (e.code, e.status().to_string()),
            Ok(events) if !events.is_empty() || started.elapsed() >= wait => {
                let body: Vec<String> = events.iter().map(ToString::to_string).collect();
                return (200, body.join("\n"));
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
