//! Alerts: SNS (e-mail and anything that subscribes; message attributes for subscription
//! filters) and Slack. Alerts come after the action, never before it, and a failed alert is
//! logged, never a failed action.

use std::fmt;
use std::sync::Arc;

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;

use crate::adapters::aws::AwsError;
use crate::adapters::outbound::{self, Senders};
use crate::domain::{AlertKind, GroupName, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// One alert: what happened, to which group, how bad, and the facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub event: AlertKind,
    pub group: GroupName,
    pub severity: Severity,
    /// One line that says it all: the e-mail subject, the Slack headline.
    pub headline: String,
    pub facts: Vec<(String, String)>,
}

impl Alert {
    pub fn new(event: AlertKind, group: &GroupName, severity: Severity, headline: impl Into<String>) -> Self {
        Self { event, group: group.clone(), severity, headline: headline.into(), facts: Vec::new() }
    }

    pub fn fact(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.facts.push((name.to_string(), value.to_string()));
        self
    }

    /// The e-mail subject: SNS takes at most 100 printable ASCII characters.
    pub fn subject(&self) -> String {
        let text: String = format!("[spotkeeper] {}", self.headline)
            .chars()
            .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
            .collect();
        text.chars().take(100).collect()
    }

    pub fn body(&self) -> String {
        let mut body = format!("{}\n\n", self.headline);
        for (name, value) in [("group", self.group.as_str()), ("event", self.event.as_str())]
            .into_iter()
            .chain(self.facts.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        {
            body.push_str(&format!("{name}: {value}\n"));
        }
        body
    }
}

/// Above this many alerts of one kind for one group at once, they go out as one digest.
pub const DIGEST_OVER: usize = 5;
/// The values a digest lists of one fact before it only counts the rest.
const DIGEST_VALUES: usize = 20;

/// Folds each run of more than `most` alerts of one event, group and severity into one digest:
/// a mass interruption is one message with the count and the instances, not a thousand messages
/// (Slack would throttle them, and nobody reads them).
pub fn digest(alerts: &[Alert], most: usize) -> Vec<Alert> {
    let mut kinds: Vec<(AlertKind, &GroupName, Severity, Vec<&Alert>)> = Vec::new();
    for alert in alerts {
        match kinds.iter_mut().find(|(e, g, s, _)| *e == alert.event && **g == alert.group && *s == alert.severity) {
            Some((_, _, _, same)) => same.push(alert),
            None => kinds.push((alert.event, &alert.group, alert.severity, vec![alert])),
        }
    }
    let mut out = Vec::new();
    for (event, group, severity, same) in kinds {
        let [first, ..] = same.as_slice() else { continue };
        if same.len() <= most {
            out.extend(same.into_iter().cloned());
            continue;
        }
        let mut digest = Alert::new(
            event,
            group,
            severity,
            format!("{group}: {} {event} alerts — the first: {}", same.len(), first.headline),
        )
        .fact("count", same.len());
        let mut names: Vec<&str> = Vec::new();
        for (name, _) in same.iter().flat_map(|a| &a.facts) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        for name in names {
            let mut values: Vec<&str> = Vec::new();
            for (_, value) in same.iter().flat_map(|a| &a.facts).filter(|(n, _)| n == name) {
                if !values.contains(&value.as_str()) {
                    values.push(value);
                }
            }
            let listed = values.iter().take(DIGEST_VALUES).copied().collect::<Vec<_>>().join(", ");
            let value = match values.len().checked_sub(DIGEST_VALUES) {
                Some(more) if more > 0 => format!("{listed} and {more} more"),
                _ => listed,
            };
            digest = digest.fact(name, value);
        }
        out.push(digest);
    }
    out
}

/// Where alerts go. Without a topic or a Slack URL, alerts are only logged.
#[derive(Clone, Debug)]
pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic_arn: Option<String>,
    slack: Option<Secret>,
    /// Slack's client: it never follows a redirect (Slack answers posts directly).
    http: Result<reqwest::Client, String>,
    senders: Arc<Senders>,
    /// For console links in Slack messages.
    region: String,
}

impl Notifier {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: Option<String>, slack: Option<Secret>, region: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(outbound::TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("no HTTP client: {}", outbound::chain(&e)));
        Self { sns, topic_arn, slack, http, senders: Arc::default(), region }
    }

    /// The clients the groups' webhooks go out through.
    pub fn senders(&self) -> &Senders {
        &self.senders
    }

    /// Sends every alert to every channel, concurrently; failures are logged.
    pub async fn send(&self, alerts: &[Alert]) {
        let sends = alerts.iter().map(|alert| async move {
            tracing::info!(group = %alert.group, event = %alert.event, severity = %alert.severity, "{}", alert.headline);
            let (sns, slack) = tokio::join!(self.publish(alert), self.slack(alert));
            if let Err(err) = sns {
                tracing::error!(group = %alert.group, event = %alert.event, error = %err, "SNS alert not sent");
            }
            if let Err(err) = slack {
                tracing::error!(group = %alert.group, event = %alert.event, error = %err, "Slack alert not sent");
            }
        });
        futures::future::join_all(sends).await;
    }

    async fn publish(&self, alert: &Alert) -> Result<(), AwsError> {
        let Some(topic) = &self.topic_arn else { return Ok(()) };
        let attribute = |value: &str| MessageAttributeValue::builder().data_type("String").string_value(value).build();
        let mut request = self.sns.publish().topic_arn(topic).subject(alert.subject()).message(alert.body());
        let severity = alert.severity.to_string();
        for (name, value) in [("event", alert.event.as_str()), ("group", alert.group.as_str()), ("severity", &severity)]
        {
            let value =
                attribute(value).map_err(|e| AwsError { operation: "Publish", code: None, message: e.to_string() })?;
            request = request.message_attributes(name, value);
        }
        request.send().await.map_err(|e| AwsError::from_sdk("Publish", e))?;
        Ok(())
    }

    async fn slack(&self, alert: &Alert) -> Result<(), String> {
        let Some(url) = &self.slack else { return Ok(()) };
        let icon = match alert.severity {
            Severity::Info => ":white_check_mark:",
            Severity::Warning => ":warning:",
            Severity::Critical => ":rotating_light:",
        };
        let facts: Vec<String> = alert.facts.iter().map(|(n, v)| format!("*{n}*: {v}")).collect();
        // A link to the instance in the EC2 console, when the alert is about one.
        let fact = |name: &str| alert.facts.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let instance = fact("replacement").or(fact("instance"));
        let console = match instance {
            Some(id) => format!(
                "<https://{r}.console.aws.amazon.com/ec2/home?region={r}#InstanceDetails:instanceId={id}|Open {id} in the EC2 console>",
                r = self.region
            ),
            None => format!(
                "<https://{r}.console.aws.amazon.com/ec2/home?region={r}#Instances:|Open the EC2 console>",
                r = self.region
            ),
        };
        let payload = json!({
            "text": format!("{icon} {}", alert.headline),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": format!("{icon} {}", alert.severity.to_string().to_uppercase()), "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", alert.headline)}},
                {"type": "section", "text": {"type": "mrkdwn", "text": format!("*group*: {}\n*event*: {}\n{}", alert.group, alert.event, facts.join("\n"))}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": console}]},
            ]
        });
        // The URL is a secret: errors name the status, never the URL.
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let response = http
            .post(url.expose())
            .json(&payload)
            .send()
            .await
            .map_err(|e| format!("Slack unreachable: {}", e.without_url()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status if status.is_redirection() => Err(format!("Slack answered {status}: redirects are not followed")),
            status => Err(format!("Slack answered {status}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> GroupName {
        GroupName::try_from("web".to_string()).unwrap()
    }

    #[test]
    fn a_flood_of_one_kind_becomes_one_digest_and_the_rest_stays_as_it_is() {
        let interrupted = |i: usize| {
            Alert::new(AlertKind::Interrupted, &web(), Severity::Warning, format!("web: i-{i} interrupted"))
                .fact("instance", format!("i-{i}"))
                .fact("action", "replaced")
        };
        let mut alerts: Vec<Alert> = (0..30).map(interrupted).collect();
        alerts.push(Alert::new(AlertKind::Fallback, &web(), Severity::Warning, "web: no Spot capacity"));
        alerts.push(Alert { group: GroupName::try_from("api".to_string()).unwrap(), ..interrupted(99) });
        let out = digest(&alerts, DIGEST_OVER);
        assert_eq!(out.len(), 3, "{out:#?}");
        let folded = &out[0];
        assert_eq!(folded.headline, "web: 30 interrupted alerts — the first: web: i-0 interrupted");
        let fact = |name: &str| folded.facts.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(fact("count"), Some("30"));
        assert_eq!(fact("action"), Some("replaced"), "one value, said once");
        let instances = fact("instance").unwrap();
        assert!(instances.starts_with("i-0, i-1, ") && instances.ends_with("i-19 and 10 more"), "{instances}");
        assert_eq!(out[1].event, AlertKind::Fallback);
        assert_eq!(out[2].group.as_str(), "api", "another group's alert is its own");
        assert_eq!(digest(&alerts[..5], DIGEST_OVER), alerts[..5].to_vec(), "a few go out as they are");
    }

    #[test]
    fn the_subject_fits_email() {
        let alert =
            Alert::new(AlertKind::Replaced, &web(), Severity::Info, format!("web: replaced i-1 — {}", "x".repeat(200)));
        let subject = alert.subject();
        assert!(subject.len() <= 100);
        assert!(subject.is_ascii() && !subject.contains('—'));
        assert!(subject.starts_with("[spotkeeper] web: replaced i-1"));
    }

    #[test]
    fn the_body_carries_the_facts() {
        let alert = Alert::new(AlertKind::Interrupted, &web(), Severity::Warning, "web: i-1 will be interrupted")
            .fact("pool", "m5.large in us-east-1a");
        assert!(alert.body().contains("pool: m5.large in us-east-1a"));
        assert!(alert.body().contains("group: web"));
    }
}
