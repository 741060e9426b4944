//! The one place a grant is decided. Every capability call asks [`check`] before doing
//! anything; no other code in this crate reads a grant or a ceiling to allow something.

use std::fmt;

use coda_types::HostError;

use crate::settings::{AppletGrant, Settings, TenantSettings};

/// The scheme of an HTTP request; a host pattern without a port matches its default port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// What an applet asks to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// A request to `host` (lowercase; an IPv6 literal without brackets) on `port`.
    Http {
        scheme: Scheme,
        host: &'a str,
        port: u16,
    },
    Email,
    Sql {
        database: &'a str,
    },
    Secret {
        name: &'a str,
    },
    Interactions,
}

impl fmt::Display for Access<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Http { host, port, .. } if host.contains(':') => {
                write!(f, "http to [{host}]:{port}")
            }
            Access::Http { host, port, .. } => write!(f, "http to {host}:{port}"),
            Access::Email => f.write_str("email"),
            Access::Sql { database } => write!(f, "sql on database '{database}'"),
            // The name only: a secret's value never reaches a message.
            Access::Secret { name } => write!(f, "secret '{name}'"),
            Access::Interactions => f.write_str("interactions"),
        }
    }
}

/// Decides whether `applet_name@applet_version` of `tenant` may have `access`: the applet's
/// grant (a version-pinned entry wins over the unpinned one) intersected with the
/// operator's ceiling for the tenant. The error names what was not granted and by whom.
pub fn check(
    settings: &Settings,
    tenant: &str,
    applet_name: &str,
    applet_version: &str,
    access: &Access<'_>,
) -> Result<(), HostError> {
    let tenant_settings = settings.tenants.get(tenant).ok_or_else(|| {
        HostError::NotGranted(format!(
            "{access} is not granted: tenant '{tenant}' has no capability grants"
        ))
    })?;
    let applet = format!("{applet_name}@{applet_version}");
    let grant = applet_grant(tenant_settings, applet_name, applet_version).ok_or_else(|| {
        HostError::NotGranted(format!(
            "{access} is not granted: tenant '{tenant}' grants applet {applet} nothing"
        ))
    })?;
    let ceiling = &tenant_settings.ceiling;
    let (granted, within_ceiling) = match *access {
        Access::Http { scheme, host, port } => {
            let default_port = scheme.default_port();
            (
                grant
                    .http
                    .iter()
                    .any(|p| p.matches(host, port, default_port)),
                ceiling
                    .http_hosts
                    .iter()
                    .any(|p| p.matches(host, port, default_port)),
            )
        }
        Access::Email => (grant.email, ceiling.email),
        Access::Sql { database } => (
            grant.sql.iter().any(|d| d == database),
            ceiling.databases.iter().any(|d| d == database),
        ),
        Access::Secret { name } => (
            grant.secrets.iter().any(|s| s == name),
            ceiling.secrets.iter().any(|s| s == name),
        ),
        Access::Interactions => (grant.interactions, ceiling.interactions),
    };
    if !granted {
        return Err(HostError::NotGranted(format!(
            "{access} is not granted to applet {applet} by tenant '{tenant}'"
        )));
    }
    if !within_ceiling {
        return Err(HostError::NotGranted(format!(
            "{access} is granted to applet {applet} but is outside what the operator allows tenant '{tenant}'"
        )));
    }
    Ok(())
}

fn applet_grant<'a>(
    tenant: &'a TenantSettings,
    name: &str,
    version: &str,
) -> Option<&'a AppletGrant> {
    tenant
        .grants
        .get(&format!("{name}@{version}"))
        .or_else(|| tenant.grants.get(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &str = r#"
tenants:
  acme:
    ceiling:
      http_hosts: ["*.example.com", "api.partner.test:8443", "open.test:*"]
      email: true
      databases: [reports]
      secrets: [sms-token, smtp-password]
      interactions: true
    grants:
      send-sms:
        http: ["*.example.com", "api.partner.test:8443", "other.test", "open.test:9000"]
        secrets: [sms-token, not-in-ceiling]
        sql: [reports]
      send-sms@2.0.0:
        http: ["v2.example.com"]
      mailer:
        email: true
        interactions: true
    databases:
      reports: "sqlite:/tmp/reports.db"
  globex:
    grants:
      send-sms:
        http: ["*.example.com"]
        email: true
"#;

    fn settings() -> Settings {
        Settings::from_yaml_str(SETTINGS).unwrap()
    }

    fn http(host: &str, port: u16) -> Access<'_> {
        Access::Http {
            scheme: Scheme::Https,
            host,
            port,
        }
    }

    fn check_v1(access: Access<'_>) -> Result<(), HostError> {
        check(&settings(), "acme", "send-sms", "1.0.0", &access)
    }

    fn not_granted(r: Result<(), HostError>) -> String {
        match r {
            Err(HostError::NotGranted(m)) => m,
            other => panic!("expected not-granted, got {other:?}"),
        }
    }

    #[test]
    fn wildcard_grants_subdomains_only() {
        assert!(check_v1(http("a.example.com", 443)).is_ok());
        assert!(check_v1(http("a.b.example.com", 443)).is_ok());
        let m = not_granted(check_v1(http("example.com", 443)));
        assert!(
            m.contains("example.com:443") && m.contains("send-sms@1.0.0"),
            "{m}"
        );
        not_granted(check_v1(http("a.example.com", 8443)));
    }

    #[test]
    fn ports_must_match_grant_and_ceiling() {
        assert!(check_v1(http("api.partner.test", 8443)).is_ok());
        not_granted(check_v1(http("api.partner.test", 443)));
        // Ceiling allows any port on open.test, the grant only 9000.
        assert!(check_v1(http("open.test", 9000)).is_ok());
        not_granted(check_v1(http("open.test", 9001)));
        // http's default port is 80: the wildcard pattern without a port matches it there.
        let plain = Access::Http {
            scheme: Scheme::Http,
            host: "a.example.com",
            port: 80,
        };
        assert!(check_v1(plain).is_ok());
    }

    #[test]
    fn ceiling_narrower_than_grant_wins() {
        let m = not_granted(check_v1(http("other.test", 443)));
        assert!(m.contains("outside what the operator allows"), "{m}");
        let m = not_granted(check_v1(Access::Secret {
            name: "not-in-ceiling",
        }));
        assert!(m.contains("secret 'not-in-ceiling'"), "{m}");
        // globex's grant says email, but its ceiling (default) allows nothing.
        let m = not_granted(check(
            &settings(),
            "globex",
            "send-sms",
            "1.0.0",
            &Access::Email,
        ));
        assert!(m.contains("outside"), "{m}");
        not_granted(check(
            &settings(),
            "globex",
            "send-sms",
            "1.0.0",
            &http("a.example.com", 443),
        ));
    }

    #[test]
    fn each_kind_of_access() {
        assert!(check_v1(Access::Secret { name: "sms-token" }).is_ok());
        assert!(
            check_v1(Access::Sql {
                database: "reports"
            })
            .is_ok()
        );
        let m = not_granted(check_v1(Access::Sql { database: "crm" }));
        assert!(m.contains("database 'crm'"), "{m}");
        let m = not_granted(check_v1(Access::Email));
        assert!(m.contains("email is not granted"), "{m}");
        not_granted(check_v1(Access::Interactions));
        let s = settings();
        assert!(check(&s, "acme", "mailer", "0.1.0", &Access::Email).is_ok());
        assert!(check(&s, "acme", "mailer", "0.1.0", &Access::Interactions).is_ok());
    }

    #[test]
    fn unknown_tenant_and_applet() {
        let s = settings();
        let m = not_granted(check(&s, "initech", "send-sms", "1.0.0", &Access::Email));
        assert!(m.contains("tenant 'initech'"), "{m}");
        let m = not_granted(check(&s, "acme", "stranger", "1.0.0", &Access::Email));
        assert!(m.contains("stranger@1.0.0"), "{m}");
    }

    #[test]
    fn version_pinned_grant_wins_for_its_version() {
        let s = settings();
        let v2 = |access| check(&s, "acme", "send-sms", "2.0.0", &access);
        assert!(v2(http("v2.example.com", 443)).is_ok());
        // The pinned entry replaces the unpinned one: nothing else of it carries over.
        not_granted(v2(http("a.example.com", 443)));
        not_granted(v2(Access::Secret { name: "sms-token" }));
        // Other versions still get the unpinned entry.
        assert!(check_v1(Access::Secret { name: "sms-token" }).is_ok());
    }
}
