//! Host patterns of HTTP grants: `api.example.com`, `*.example.com`, `[2001:db8::1]`, each
//! with an optional port (`:443`, `:*`). Without a port a pattern matches only the scheme's
//! default port, so granting `api.example.com` does not also grant its admin port.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern {
    host: HostMatch,
    port: PortMatch,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `*`: any host (an operator ceiling that leaves the choice to the tenant's grants).
    Any,
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any name ending so, not `example.com`.
    Subdomains(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortMatch {
    SchemeDefault,
    Exact(u16),
    Any,
}

impl HostPattern {
    /// Whether `host` (lowercase, as a URL parser gives it; IPv6 without brackets) on `port`
    /// matches, where `default_port` is the request scheme's default port.
    pub fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let port_ok = match self.port {
            PortMatch::SchemeDefault => port == default_port,
            PortMatch::Exact(p) => port == p,
            PortMatch::Any => true,
        };
        // A fully qualified `api.example.com.` is the same host.
        let host = host.strip_suffix('.').unwrap_or(host);
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostMatch::Any => true,
            HostMatch::Exact(exact) => host == *exact,
            HostMatch::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        };
        port_ok && host_ok
    }

    /// Whether every host and port this pattern matches, `outer` matches too, for either
    /// scheme: a grant must lie within the ceiling as a pattern, not only for one request.
    pub fn within(&self, outer: &HostPattern) -> bool {
        let port_ok = match (outer.port, self.port) {
            (PortMatch::Any, _) => true,
            (PortMatch::Exact(o), PortMatch::Exact(p)) => o == p,
            (PortMatch::SchemeDefault, PortMatch::SchemeDefault) => true,
            _ => false,
        };
        let host_ok = match (&outer.host, &self.host) {
            (HostMatch::Any, _) => true,
            (HostMatch::Exact(o), HostMatch::Exact(h)) => o == h,
            (HostMatch::Subdomains(suffix), HostMatch::Exact(h)) => {
                h.len() > suffix.len() && h.ends_with(suffix.as_str())
            }
            (HostMatch::Subdomains(suffix), HostMatch::Subdomains(inner)) => {
                inner.ends_with(suffix.as_str())
            }
            _ => false,
        };
        port_ok && host_ok
    }
}

/// As written, so a stored grant reads back as the tenant wrote it.
impl Serialize for HostPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl fmt::Debug for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        HostPattern::try_from(text.to_string())
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        if lower.contains("://") || lower.contains('/') {
            return Err(format!(
                "'{text}' is a URL; a host pattern is a host with an optional port, e.g. api.example.com:443"
            ));
        }
        let (host, port) = if let Some(rest) = lower.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{text}': an IPv6 address needs its closing ']'"))?;
            let inside: std::net::Ipv6Addr = inside
                .parse()
                .map_err(|_| format!("'{text}': '{inside}' is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("'{text}': only ':port' may follow the address"))?,
                ),
            };
            (HostMatch::Exact(inside.to_string()), port)
        } else {
            let (host, port) = match lower.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (lower.as_str(), None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err(format!(
                    "'{text}': write an IPv6 address in brackets, e.g. [::1]:8080"
                ));
            }
            (
                parse_host(host).map_err(|e| format!("'{text}': {e}"))?,
                port,
            )
        };
        let port = match port {
            None => PortMatch::SchemeDefault,
            Some("*") => PortMatch::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => PortMatch::Exact(p),
                _ => {
                    return Err(format!(
                        "'{text}': the port is a number from 1 to 65535 or *"
                    ));
                }
            },
        };
        Ok(HostPattern { host, port, text })
    }
}

fn parse_host(host: &str) -> Result<HostMatch, String> {
    if host == "*" {
        return Ok(HostMatch::Any);
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("the host is empty".into());
    }
    if name.contains('*') {
        return Err(
            "a wildcard is allowed only as the whole first label, e.g. *.example.com".into(),
        );
    }
    let valid = name.split('.').all(|label| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !valid {
        return Err(format!("'{name}' is not a host name"));
    }
    Ok(if wildcard {
        HostMatch::Subdomains(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn exact_host_on_the_default_port_only() {
        let pat = p("API.example.com");
        assert!(pat.matches("api.example.com", 443, 443));
        assert!(pat.matches("api.example.com.", 443, 443));
        assert!(!pat.matches("api.example.com", 8443, 443));
        assert!(!pat.matches("x.api.example.com", 443, 443));
        assert!(!pat.matches("example.com", 443, 443));
    }

    #[test]
    fn wildcard_matches_subdomains_at_any_depth_but_not_the_domain() {
        let pat = p("*.example.com");
        assert!(pat.matches("a.example.com", 443, 443));
        assert!(pat.matches("a.b.example.com", 80, 80));
        assert!(!pat.matches("example.com", 443, 443));
        assert!(!pat.matches("badexample.com", 443, 443));
        assert!(!pat.matches("a.example.com.evil.test", 443, 443));
    }

    #[test]
    fn ports() {
        assert!(p("h.example:8080").matches("h.example", 8080, 80));
        assert!(!p("h.example:8080").matches("h.example", 80, 80));
        assert!(p("h.example:*").matches("h.example", 1, 443));
        assert!(p("[::1]:*").matches("::1", 9, 80));
        assert!(p("[::1]").matches("::1", 80, 80));
        assert!(p("127.0.0.1:*").matches("127.0.0.1", 5000, 80));
        assert!(p("*").matches("anything.test", 443, 443));
        assert!(!p("*").matches("anything.test", 444, 443));
    }

    #[test]
    fn within() {
        assert!(p("api.example.com").within(&p("*.example.com")));
        assert!(p("a.b.example.com:*").within(&p("*.example.com:*")));
        assert!(p("*.b.example.com").within(&p("*.example.com")));
        assert!(p("*.example.com").within(&p("*.example.com")));
        assert!(p("anything.test:8080").within(&p("*:*")));
        assert!(p("h.test:8080").within(&p("h.test:*")));
        assert!(!p("example.com").within(&p("*.example.com")));
        assert!(!p("*.example.com").within(&p("api.example.com")));
        assert!(!p("h.test:*").within(&p("h.test:8080")));
        assert!(!p("h.test:443").within(&p("h.test")));
        assert!(!p("*").within(&p("*.example.com")));
        assert!(!p("badexample.com").within(&p("*.example.com")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "",
            "a.*.com",
            "*example.com",
            "https://a.com",
            "a.com/x",
            "a.com:0",
            "a.com:x",
            "::1",
            "[::1",
            "[zz]",
            "a..com",
            "*.",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?} accepted");
        }
    }
}
