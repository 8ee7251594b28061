//! Outgoing webhooks: one signed JSON POST to one webhook, retried with backoff, never
//! redirected. Which webhooks get what, and recording the outcomes, is the alerts workflow's.

use std::time::Duration;

use crate::adapters::outbound::{Senders, chain};
use crate::domain::{Reach, Webhook, signature};

/// Attempts per delivery.
pub const ATTEMPTS: u32 = 3;

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
    let url = match webhook.check() {
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
