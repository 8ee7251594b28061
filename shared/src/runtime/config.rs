//! The environment contract (DESIGN.md, "Configuration"), read and validated once at init.

use std::fmt;

use thiserror::Error;

pub use crate::domain::Secret;

#[derive(Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is required: set it to the name of the spotkeeper DynamoDB table")]
    Missing(&'static str),
    #[error(
        "this function needs {0} or {1}: the first carries the value, the second names an SSM SecureString holding it"
    )]
    MissingSecret(&'static str, &'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error(
        "set only one of {0} and {1}: the first carries the value, the second names an SSM SecureString holding it"
    )]
    Both(&'static str, &'static str),
    #[error("could not read SSM parameter {param} (named by {name}): {reason}")]
    Parameter { name: &'static str, param: String, reason: String },
}

/// `main` returning this error prints it with `Debug`: make that the full, actionable message.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where a secret comes from: the environment itself, or an SSM SecureString read at init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Value(Secret),
    Parameter { variable: &'static str, name: String },
}

impl SecretSource {
    /// The secret itself: from the environment, or read (decrypted) from SSM.
    pub async fn resolve(&self, ssm: &crate::adapters::aws::ssm::Ssm) -> Result<Secret, ConfigError> {
        match self {
            SecretSource::Value(secret) => Ok(secret.clone()),
            SecretSource::Parameter { variable, name } => ssm
                .secure_parameter(name)
                .await
                .map(Secret::new)
                .map_err(|e| ConfigError::Parameter { name: variable, param: name.clone(), reason: e.to_string() }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub table: String,
    pub topic_arn: Option<String>,
    pub slack_webhook: Option<SecretSource>,
    pub api_token: Option<SecretSource>,
    pub webhook_secret: Option<SecretSource>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let table = get("SPOTKEEPER_TABLE").ok_or(ConfigError::Missing("SPOTKEEPER_TABLE"))?;
        if !(3..=255).contains(&table.len()) || !table.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(ConfigError::Invalid {
                name: "SPOTKEEPER_TABLE",
                reason: format!("{table:?} is not a DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)"),
            });
        }
        let topic_arn = get("SPOTKEEPER_TOPIC_ARN");
        if let Some(arn) = &topic_arn
            && !(arn.starts_with("arn:") && arn.split(':').count() == 6 && arn.contains(":sns:"))
        {
            return Err(ConfigError::Invalid {
                name: "SPOTKEEPER_TOPIC_ARN",
                reason: format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"),
            });
        }
        let secret = |value: &'static str, param: &'static str| -> Result<_, ConfigError> {
            match (get(value), get(param)) {
                (Some(_), Some(_)) => Err(ConfigError::Both(value, param)),
                (Some(v), None) => Ok(Some(SecretSource::Value(Secret::new(v)))),
                (None, Some(name)) => Ok(Some(SecretSource::Parameter { variable: param, name })),
                (None, None) => Ok(None),
            }
        };
        let slack_webhook = secret("SPOTKEEPER_SLACK_WEBHOOK_URL", "SPOTKEEPER_SLACK_WEBHOOK_PARAM")?;
        if let Some(SecretSource::Value(url)) = &slack_webhook
            && !url.expose().starts_with("https://")
            && !url.expose().starts_with("http://127.0.0.1")
            && !url.expose().starts_with("http://localhost")
        {
            return Err(ConfigError::Invalid {
                name: "SPOTKEEPER_SLACK_WEBHOOK_URL",
                reason: "must be an https:// URL (plain http only to 127.0.0.1 or localhost, for local use)".into(),
            });
        }
        Ok(Self {
            table,
            topic_arn,
            slack_webhook,
            api_token: secret("SPOTKEEPER_API_TOKEN", "SPOTKEEPER_API_TOKEN_PARAM")?,
            webhook_secret: secret("SPOTKEEPER_WEBHOOK_SECRET", "SPOTKEEPER_WEBHOOK_SECRET_PARAM")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn the_table_is_required() {
        assert_eq!(config(&[]), Err(ConfigError::Missing("SPOTKEEPER_TABLE")));
        assert!(matches!(
            config(&[("SPOTKEEPER_TABLE", "no spaces")]),
            Err(ConfigError::Invalid { name: "SPOTKEEPER_TABLE", .. })
        ));
    }

    #[test]
    fn secrets_come_from_a_value_or_a_parameter_never_both() {
        let c = config(&[("SPOTKEEPER_TABLE", "fleet"), ("SPOTKEEPER_API_TOKEN_PARAM", "/sk/token")]).unwrap();
        assert_eq!(
            c.api_token,
            Some(SecretSource::Parameter { variable: "SPOTKEEPER_API_TOKEN_PARAM", name: "/sk/token".into() })
        );
        let both = config(&[
            ("SPOTKEEPER_TABLE", "fleet"),
            ("SPOTKEEPER_API_TOKEN", "t"),
            ("SPOTKEEPER_API_TOKEN_PARAM", "/sk/token"),
        ]);
        assert_eq!(both, Err(ConfigError::Both("SPOTKEEPER_API_TOKEN", "SPOTKEEPER_API_TOKEN_PARAM")));
    }

    #[test]
    fn secrets_are_never_printed() {
        let c = config(&[("SPOTKEEPER_TABLE", "fleet"), ("SPOTKEEPER_API_TOKEN", "hunter2")]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn bad_topic_and_slack_values_are_refused() {
        assert!(matches!(
            config(&[("SPOTKEEPER_TABLE", "fleet"), ("SPOTKEEPER_TOPIC_ARN", "alerts")]),
            Err(ConfigError::Invalid { name: "SPOTKEEPER_TOPIC_ARN", .. })
        ));
        assert!(matches!(
            config(&[("SPOTKEEPER_TABLE", "fleet"), ("SPOTKEEPER_SLACK_WEBHOOK_URL", "http://example.com/x")]),
            Err(ConfigError::Invalid { name: "SPOTKEEPER_SLACK_WEBHOOK_URL", .. })
        ));
    }
}
