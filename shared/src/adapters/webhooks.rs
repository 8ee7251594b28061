//! Outgoing webhooks: one signed JSON POST to one webhook, retried with backoff, never
//! redirected. Which webhooks get what, and recording the outcomes, is the alerts workflow's.

use std::net::IpAddr;
use std::time::Duration;

use crate::adapters::outbound::{Reach, Senders, chain};
use crate::domain::{Webhook, signature};

/// Attempts per delivery.
pub const ATTEMPTS: u32 = 3;

/// The events a webhook may ask for.
pub const EVENTS: &[&str] = &[
    "interrupted",
    "replaced",
    "fallback",
    "volume-moved",
    "interruption-failed",
    "rebalance-recommended",
    "rebalance-replacing",
    "rebalance-failed",
    "recovery-started",
    "recovered",
    "recovery-failed",
    "reconciled",
    "no-capacity",
    "volume-grown",
    "volume-refused",
    "image-created",
    "image-activated",
    "rollback",
];

/// Checks a webhook's URL; the addresses its host resolves to are screened when it is used.
pub fn check(webhook: &Webhook) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(&webhook.url).map_err(|e| format!("{:?} is not a URL ({e})", webhook.url))?;
    let host = url.host_str().ok_or_else(|| format!("{} has no host", webhook.url))?;
    let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
    let loopback = host == "localhost" || literal.is_some_and(|ip| ip.to_canonical().is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback && webhook.allow_loopback_http => {}
        "http" if loopback => return Err("plain http:// goes to loopback only, with allow_loopback_http".into()),
        _ => return Err("webhooks go to https:// URLs (plain http:// only to loopback, for local use)".into()),
    }
    // A literal address is connected to without resolving: the rule applies here.
    let refused = match literal {
        Some(ip) => !Reach::of(webhook).permits(ip),
        None => host == "localhost" && Reach::of(webhook) == Reach::Public,
    };
    if refused {
        return Err(format!(
            "{host} is a private, loopback, link-local or metadata address: set allow_private to send there"
        ));
    }
    if webhook.secret.len() < 16 || webhook.secret.len() > 256 {
        return Err("the secret must be 16-256 characters".into());
    }
    if let Some(unknown) = webhook.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(format!("{unknown:?} is not an event (one of {})", EVENTS.join(", ")));
    }
    Ok(url)
}

/// How one delivery went: delivered or not, after how many attempts, the last answer or error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: bool,
    pub attempts: u32,
    pub detail: String,
}

impl Delivery {
    fn new(delivered: bool, attempts: u32, detail: String) -> Self {
        Self { delivered, attempts, detail }
    }
}

/// Delivers one payload: up to `ATTEMPTS` tries, backing off. Returns the last status or error.
/// A redirect is an answer, not a way elsewhere: the delivery failed, and trying again would
/// get the same answer.
pub async fn deliver(
    senders: &Senders,
    webhook: &Webhook,
    body: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Delivery {
    let url = match check(webhook) {
        Ok(url) => url,
        Err(why) => return Delivery::new(false, 0, why),
    };
    let http = match senders.client(Reach::of(webhook)) {
        Ok(http) => http,
        Err(why) => return Delivery::new(false, 0, why),
    };
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let request = http
            .post(url.clone())
            .header("content-type", "application/json")
            .header(signature::HEADER, signature::sign(webhook.secret.as_bytes(), now, body))
            .body(body.to_vec());
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                return Delivery::new(true, attempt, response.status().to_string());
            }
            Ok(response) if response.status().is_redirection() => {
                return Delivery::new(
                    false,
                    attempt,
                    format!("answered {}: redirects are not followed", response.status()),
                );
            }
            Ok(response) => last = format!("answered {}", response.status()),
            Err(err) => last = format!("unreachable: {}", chain(&err.without_url())),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
    Delivery::new(false, ATTEMPTS, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.into(),
            secret: "0123456789abcdef".into(),
            events: vec![],
            allow_loopback_http: false,
            allow_private: false,
        }
    }

    #[test]
    fn only_safe_addresses_pass() {
        assert!(check(&hook("https://hooks.example.com/spotkeeper")).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "https://169.254.169.254/latest",
            "https://10.0.0.5/x",
            "https://[fd00:ec2::254]/x",
            "http://127.0.0.1:9000/x",
            "ftp://x/y",
            "not a url",
        ] {
            assert!(check(&hook(bad)).is_err(), "{bad}");
        }
        let local = Webhook { allow_loopback_http: true, ..hook("http://127.0.0.1:9000/x") };
        assert!(check(&local).is_ok());
        let private = Webhook { allow_private: true, ..hook("https://10.0.0.5/x") };
        assert!(check(&private).is_ok());
        assert!(check(&Webhook { secret: "short".into(), ..hook("https://hooks.example.com") }).is_err());
        assert!(check(&Webhook { events: vec!["everything".into()], ..hook("https://hooks.example.com") }).is_err());
        let mapped = Webhook { allow_loopback_http: true, ..hook("https://[::ffff:10.0.0.1]/x") };
        assert!(check(&mapped).is_err(), "an IPv4-mapped private address is private");
    }
}
