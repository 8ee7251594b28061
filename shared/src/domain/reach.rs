//! Where a webhook may send: public addresses, loopback for local runs, private ones only when
//! allowed. One rule for the configured URL and for what its host resolves to when a delivery
//! connects.

use std::net::IpAddr;

use super::{AlertKind, Webhook};

/// An address a webhook may only reach with `allow_private`: loopback, private, shared (CGNAT),
/// link-local (the instance metadata service among them), unique-local, multicast, unspecified;
/// an IPv4 address written as IPv6 (`::ffff:10.0.0.1`) counts as the IPv4 address it is.
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Which addresses a webhook may reach: public ones; loopback too with `allow_loopback_http`
/// (for local runs and tests); any with `allow_private`. One rule for the configured URL and
/// for the addresses its host resolves to when a delivery connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Public,
    Loopback,
    Private,
}

impl Reach {
    pub fn of(webhook: &Webhook) -> Self {
        if webhook.allow_private {
            Reach::Private
        } else if webhook.allow_loopback_http {
            Reach::Loopback
        } else {
            Reach::Public
        }
    }

    pub fn permits(self, ip: IpAddr) -> bool {
        match self {
            Reach::Private => true,
            Reach::Loopback => !is_private(ip) || ip.to_canonical().is_loopback(),
            Reach::Public => !is_private(ip),
        }
    }
}

impl Webhook {
    /// Checks a webhook's URL; the addresses its host resolves to are screened when it is used.
    pub fn check(&self) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("{:?} is not a URL ({e})", self.url))?;
        let host = url.host_str().ok_or_else(|| format!("{} has no host", self.url))?;
        let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        let loopback = host == "localhost" || literal.is_some_and(|ip| ip.to_canonical().is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback && self.allow_loopback_http => {}
            "http" if loopback => return Err("plain http:// goes to loopback only, with allow_loopback_http".into()),
            _ => return Err("webhooks go to https:// URLs (plain http:// only to loopback, for local use)".into()),
        }
        // A literal address is connected to without resolving: the rule applies here.
        let refused = match literal {
            Some(ip) => !Reach::of(self).permits(ip),
            None => host == "localhost" && Reach::of(self) == Reach::Public,
        };
        if refused {
            return Err(format!(
                "{host} is a private, loopback, link-local or metadata address: set allow_private to send there"
            ));
        }
        if self.secret.len() < 16 || self.secret.len() > 256 {
            return Err("the secret must be 16-256 characters".into());
        }
        if let Some(unknown) = self.events.iter().find(|e| AlertKind::parse(e).is_none()) {
            let events: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!("{unknown:?} is not an event (one of {})", events.join(", ")));
        }
        Ok(url)
    }
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
        assert!(hook("https://hooks.example.com/spotkeeper").check().is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "https://169.254.169.254/latest",
            "https://10.0.0.5/x",
            "https://[fd00:ec2::254]/x",
            "http://127.0.0.1:9000/x",
            "ftp://x/y",
            "not a url",
        ] {
            assert!(hook(bad).check().is_err(), "{bad}");
        }
        let local = Webhook { allow_loopback_http: true, ..hook("http://127.0.0.1:9000/x") };
        assert!(local.check().is_ok());
        let private = Webhook { allow_private: true, ..hook("https://10.0.0.5/x") };
        assert!(private.check().is_ok());
        assert!(Webhook { secret: "short".into(), ..hook("https://hooks.example.com") }.check().is_err());
        assert!(Webhook { events: vec!["everything".into()], ..hook("https://hooks.example.com") }.check().is_err());
        let mapped = Webhook { allow_loopback_http: true, ..hook("https://[::ffff:10.0.0.1]/x") };
        assert!(mapped.check().is_err(), "an IPv4-mapped private address is private");
    }
}
