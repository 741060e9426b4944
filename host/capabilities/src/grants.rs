//! The one place a grant is decided. Every capability call asks [`check`] before doing
//! anything; no other code in this crate reads a grant or a ceiling to allow something.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use coda_types::capabilities::CapabilityCall;
use coda_types::kv::KvLimits;
use coda_types::{Capability, HostError};

use crate::net::{embedded_v4, special_range};
use crate::settings::{AppletGrant, Ceiling, Settings, TenantSettings};

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
    /// A call on `key` of the tenant's key-value store, writing a value of `value_bytes`
    /// ([`coda_types::Value::stored_len`]) when it writes one.
    Kv {
        key: &'a str,
        value_bytes: Option<u64>,
    },
}

impl<'a> Access<'a> {
    /// What a key-value call asks: its key, and the size of the value it writes.
    pub fn kv(op: &'a coda_types::kv::KvOp) -> Self {
        Access::Kv {
            key: op.key(),
            value_bytes: op.value().map(|v| v.stored_len() as u64),
        }
    }
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
            Access::Kv { key, .. } => write!(f, "kv key '{}'", key.escape_debug()),
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
        Access::Kv { key, .. } => (
            grant
                .kv
                .iter()
                .any(|prefix| key.starts_with(prefix.as_str())),
            ceiling.kv.is_some(),
        ),
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
    if let (Access::Kv { key, value_bytes }, Some(limits)) = (access, &ceiling.kv) {
        check_kv_sizes(key, *value_bytes, limits)?;
    }
    Ok(())
}

/// The grant decision a call meets before it is made, decided by [`check`] on what the
/// call asks for. A dry run asks it to answer as the real call would; an HTTP request whose
/// URL has no http(s) origin is refused as `invalid`.
pub fn check_call(
    settings: &Settings,
    tenant: &str,
    applet_name: &str,
    applet_version: &str,
    call: &CapabilityCall,
) -> Result<(), HostError> {
    let url;
    let access = match call {
        CapabilityCall::Http(request) => {
            url = url::Url::parse(&request.url).ok();
            url.as_ref().and_then(http_access)
        }
        CapabilityCall::Email(_) => Some(Access::Email),
        CapabilityCall::SqlQuery(statement) | CapabilityCall::SqlExecute(statement) => {
            Some(Access::Sql {
                database: &statement.database,
            })
        }
        CapabilityCall::Secret { name } => Some(Access::Secret { name }),
        CapabilityCall::Interactions(_) => Some(Access::Interactions),
        CapabilityCall::Kv(kv) => Some(Access::kv(&kv.op)),
    };
    let access = access.ok_or_else(|| HostError::Invalid("the URL cannot be parsed".into()))?;
    check(settings, tenant, applet_name, applet_version, &access)
}

/// What a request to `url` asks of the grants; none for a URL with no http(s) origin.
fn http_access(url: &url::Url) -> Option<Access<'_>> {
    let scheme = match url.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return None,
    };
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    Some(Access::Http {
        scheme,
        host,
        port: url.port_or_known_default()?,
    })
}

// Address ranges: the private, loopback and link-local ranges a tenant's HTTP calls may
// reach (which ranges are special is `crate::net`'s; who may reach them is decided here).

/// The ranges otherwise refused that `tenant`'s HTTP calls may reach: its ceiling's
/// `allow_private`. An unknown tenant allows none (its calls are refused by [`check`]).
pub fn allowed_private<'a>(settings: &'a Settings, tenant: &str) -> &'a [IpNet] {
    settings
        .tenants
        .get(tenant)
        .map(|t| t.ceiling.allow_private.as_slice())
        .unwrap_or(&[])
}

/// Decides whether an HTTP call may connect to `ip`: an ordinary public address always, a
/// special one (loopback, private, link-local...) only within the ranges `allowed` (the
/// tenant's [`allowed_private`]), IPv4 carried in IPv6 judged as the IPv4 address. The
/// error says which range refused it.
pub fn check_address(ip: IpAddr, allowed: &[IpNet]) -> Result<(), String> {
    let Some(reason) = special_range(ip) else {
        return Ok(());
    };
    let embedded = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    let allowed = allowed
        .iter()
        .any(|net| net.contains(&ip) || embedded.is_some_and(|v4| net.contains(&v4)));
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "address {ip} is {reason}, which the operator does not allow for this tenant"
        ))
    }
}

// Limits the operator sets per tenant in its ceiling, decided here for the service and the
// runtime to apply.

/// The largest applet component `ceiling`'s tenant may upload: its `upload_bytes`, which may
/// be above the server's `default` (a Python applet carries its interpreter) or below it.
pub fn upload_limit(ceiling: &Ceiling, default: usize) -> usize {
    ceiling
        .upload_bytes
        .map_or(default, |b| usize::try_from(b).unwrap_or(usize::MAX))
}

/// A tenant's own bounds on one invocation (its ceiling's `fuel` and `memory_bytes`), in
/// place of the runtime's defaults where the operator set them. The settings refuse a
/// ceiling above the runtime's maximum when they are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationCaps {
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
}

impl InvocationCaps {
    pub fn of(ceiling: &Ceiling) -> Self {
        InvocationCaps {
            fuel: ceiling.fuel,
            memory_bytes: ceiling.memory_bytes,
        }
    }

    /// The invocation's fuel and memory, given the runtime's `fuel` and `memory_bytes`.
    pub fn apply(&self, fuel: u64, memory_bytes: u64) -> (u64, u64) {
        (
            self.fuel.unwrap_or(fuel),
            self.memory_bytes.unwrap_or(memory_bytes),
        )
    }
}

/// A key-value call's own sizes against the tenant's limits: the key (1 byte up to
/// `max_key_bytes`, no control characters) and the value it writes. What the store already
/// holds (its keys and bytes) is counted by the store, in the write's transaction.
fn check_kv_sizes(key: &str, value_bytes: Option<u64>, limits: &KvLimits) -> Result<(), HostError> {
    if key.is_empty() {
        return Err(HostError::Invalid("a kv key must not be empty".into()));
    }
    if key.chars().any(char::is_control) {
        return Err(HostError::Invalid(format!(
            "kv key '{}' holds a control character",
            key.escape_debug()
        )));
    }
    if key.len() > limits.max_key_bytes as usize {
        return Err(HostError::LimitExceeded(format!(
            "kv key of {} bytes is longer than the tenant's limit of {} bytes (max_key_bytes)",
            key.len(),
            limits.max_key_bytes
        )));
    }
    if let Some(bytes) = value_bytes
        && bytes > limits.max_value_bytes
    {
        return Err(HostError::LimitExceeded(format!(
            "kv value of {bytes} bytes for key '{}' is larger than the tenant's limit of {} bytes (max_value_bytes)",
            key.escape_debug(),
            limits.max_value_bytes
        )));
    }
    Ok(())
}

/// What `tenant`'s key-value store may hold, for the store to count against; none when the
/// operator allows the tenant no key-value store (then [`check`] refuses every call).
pub fn kv_limits(settings: &Settings, tenant: &str) -> Option<KvLimits> {
    settings.tenants.get(tenant).and_then(|t| t.ceiling.kv)
}

fn applet_grant<'a>(
    tenant: &'a TenantSettings,
    name: &str,
    version: &str,
) -> Option<&'a AppletGrant> {
    grant_for(&tenant.grants, name, version)
}

/// The grant that applies to `name@version`: its version-pinned entry, else the unpinned one.
pub fn grant_for<'a>(
    grants: &'a BTreeMap<String, AppletGrant>,
    name: &str,
    version: &str,
) -> Option<&'a AppletGrant> {
    grants
        .get(&format!("{name}@{version}"))
        .or_else(|| grants.get(name))
}

/// Whether `key` can key a grant: an applet name, optionally with `@version`.
pub fn is_valid_grant_key(key: &str) -> bool {
    let (applet, version) = match key.split_once('@') {
        Some((applet, version)) => (applet, Some(version)),
        None => (key, None),
    };
    coda_types::names::is_valid_name(applet)
        && version.is_none_or(|v| {
            !v.is_empty() && v.len() <= 64 && !v.contains(char::is_whitespace) && !v.contains('@')
        })
}

/// One part of a grant the ceiling does not allow: the grant's field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeds {
    /// `http[0]`, `email`, `sql[1]`, `interactions`.
    pub field: String,
    pub message: String,
}

/// Everything in `grant` that lies outside `ceiling` (empty: the grant is within it). A
/// grant is checked here when the tenant writes it, so that what it was told it granted is
/// what runs; [`check`] still intersects both at every call, since the operator may narrow
/// the ceiling later. Secrets are the tenant's own (the service caps their number when they
/// are written), so naming one is always within the ceiling.
pub fn exceeds(ceiling: &Ceiling, grant: &AppletGrant) -> Vec<Exceeds> {
    let mut found = Vec::new();
    for (i, pattern) in grant.http.iter().enumerate() {
        if !ceiling.http_hosts.iter().any(|outer| pattern.within(outer)) {
            found.push(Exceeds {
                field: format!("http[{i}]"),
                message: format!(
                    "http to `{pattern}` is outside the operator's ceiling (allowed: {})",
                    listed(ceiling.http_hosts.iter().map(|p| p.to_string()))
                ),
            });
        }
    }
    if grant.email && !ceiling.email {
        found.push(Exceeds {
            field: "email".into(),
            message: "email is outside the operator's ceiling".into(),
        });
    }
    for (i, database) in grant.sql.iter().enumerate() {
        if !ceiling.databases.contains(database) {
            found.push(Exceeds {
                field: format!("sql[{i}]"),
                message: format!(
                    "database `{database}` is outside the operator's ceiling (allowed: {})",
                    listed(ceiling.databases.iter().cloned())
                ),
            });
        }
    }
    if !grant.kv.is_empty() && ceiling.kv.is_none() {
        found.push(Exceeds {
            field: "kv".into(),
            message: "the key-value store is outside the operator's ceiling".into(),
        });
    }
    if grant.interactions && !ceiling.interactions {
        found.push(Exceeds {
            field: "interactions".into(),
            message: "interactions are outside the operator's ceiling".into(),
        });
    }
    found
}

fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| format!("`{i}`")).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The capabilities an applet declares it needs (its `describe`) that `grant` gives it
/// nothing of. Declared needs only: a component's imports are no proof of need, since some
/// toolchains import every interface of the world. A need is covered by any grant of its
/// kind; which hosts, databases or secrets is the tenant's choice.
pub fn missing_needs(grant: Option<&AppletGrant>, needs: &[Capability]) -> Vec<Capability> {
    let mut missing: Vec<Capability> = needs
        .iter()
        .copied()
        .filter(|need| {
            let Some(grant) = grant else { return true };
            match need {
                Capability::Http => grant.http.is_empty(),
                Capability::Email => !grant.email,
                Capability::Sql => grant.sql.is_empty(),
                Capability::Secrets => grant.secrets.is_empty(),
                Capability::Interactions => !grant.interactions,
                Capability::Kv => grant.kv.is_empty(),
            }
        })
        .collect();
    missing.dedup();
    missing
}

/// What a tenant's ceiling bounds beside its grants: how many of its steps run at once (the
/// fair scheduler asks at every pick) and each invocation's fuel and linear memory. `None`
/// where the ceiling sets nothing: the host's own defaults apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunBounds {
    pub concurrency: Option<usize>,
    pub invocation: InvocationCaps,
}

/// The [`RunBounds`] of a tenant with `ceiling`; a tenant with none (no ceiling stored, or
/// one that no longer reads) has no bounds of its own.
pub fn run_bounds(ceiling: Option<&Ceiling>) -> RunBounds {
    let Some(ceiling) = ceiling else {
        return RunBounds::default();
    };
    RunBounds {
        concurrency: ceiling
            .concurrency
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        invocation: InvocationCaps::of(ceiling),
    }
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
      kv: {max_key_bytes: 24, max_value_bytes: 8}
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
      contact-frequency:
        kv: ["contact/", "shared/"]
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

    fn grant(yaml: &str) -> AppletGrant {
        coda_types::yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_grant_outside_the_ceiling_names_each_excess() {
        let s = settings();
        let ceiling = &s.tenants["acme"].ceiling;
        assert!(exceeds(ceiling, &grant("{http: ['a.example.com'], email: true}")).is_empty());
        let found = exceeds(
            ceiling,
            &grant("{http: ['a.example.com', 'evil.test'], sql: [reports, crm]}"),
        );
        let fields: Vec<&str> = found.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["http[1]", "sql[1]"], "{found:?}");
        assert!(found[0].message.contains("`evil.test`"), "{found:?}");
        let none = Ceiling::default();
        let found = exceeds(&none, &grant("{email: true, interactions: true}"));
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn declared_needs_are_covered_by_a_grant_of_their_kind() {
        let needs = [Capability::Http, Capability::Secrets];
        assert_eq!(missing_needs(None, &needs), needs);
        let g = grant("{http: ['api.twilio.com']}");
        assert_eq!(missing_needs(Some(&g), &needs), [Capability::Secrets]);
        let g = grant("{http: ['api.twilio.com'], secrets: [token]}");
        assert!(missing_needs(Some(&g), &needs).is_empty());
        assert!(missing_needs(None, &[]).is_empty());
    }

    fn kv(key: &str, value_bytes: Option<u64>) -> Result<(), HostError> {
        let access = Access::Kv { key, value_bytes };
        check(&settings(), "acme", "contact-frequency", "0.1.0", &access)
    }

    #[test]
    fn kv_is_granted_by_key_prefix() {
        assert!(kv("contact/+15550100", Some(1)).is_ok());
        assert!(kv("shared/x", None).is_ok());
        let m = not_granted(kv("billing/+15550100", None));
        assert!(m.contains("kv key 'billing/+15550100'"), "{m}");
        assert!(m.contains("contact-frequency@0.1.0"), "{m}");
        // A prefix is a prefix of the key's bytes, not a path: `contact` is not `contact/`.
        not_granted(kv("contact", None));
        // Another applet of the tenant gets none of it.
        let access = Access::Kv {
            key: "contact/x",
            value_bytes: None,
        };
        not_granted(check(&settings(), "acme", "send-sms", "1.0.0", &access));
        // globex's ceiling allows no key-value store, whatever its grants say.
        let m = not_granted(check(&settings(), "globex", "send-sms", "1.0.0", &access));
        assert!(m.contains("tenant 'globex'"), "{m}");
    }

    #[test]
    fn kv_sizes_are_the_ceilings() {
        match kv("contact/0123456789abcdefghij", None) {
            Err(HostError::LimitExceeded(m)) => assert!(m.contains("max_key_bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        match kv("contact/1", Some(9)) {
            Err(HostError::LimitExceeded(m)) => assert!(m.contains("max_value_bytes"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(kv("contact/1", Some(8)).is_ok());
        assert!(matches!(
            kv("contact/\u{7}", None),
            Err(HostError::Invalid(_))
        ));
        let limits = kv_limits(&settings(), "acme").unwrap();
        assert_eq!(limits.max_keys, coda_types::kv::DEFAULT_KV_MAX_KEYS);
        assert_eq!(kv_limits(&settings(), "globex"), None);
    }

    #[test]
    fn a_kv_grant_needs_the_ceilings_kv() {
        let found = exceeds(&Ceiling::default(), &grant("{kv: ['contact/']}"));
        assert_eq!(found[0].field, "kv", "{found:?}");
        let s = settings();
        assert!(exceeds(&s.tenants["acme"].ceiling, &grant("{kv: ['']}")).is_empty());
        assert_eq!(missing_needs(None, &[Capability::Kv]), [Capability::Kv]);
        assert!(missing_needs(Some(&grant("{kv: ['']}")), &[Capability::Kv]).is_empty());
    }

    #[test]
    fn grant_keys() {
        assert!(is_valid_grant_key("sms"));
        assert!(is_valid_grant_key("sms@0.1.0"));
        assert!(!is_valid_grant_key("sms@"));
        assert!(!is_valid_grant_key("Bad Name"));
        assert!(!is_valid_grant_key("sms@1@2"));
    }

    #[test]
    fn a_call_is_checked_for_what_it_asks() {
        use coda_types::capabilities::{HttpRequest, SqlStatement};
        let s = settings();
        let call = |call: CapabilityCall| check_call(&s, "acme", "send-sms", "1.0.0", &call);
        let http = |url: &str| {
            CapabilityCall::Http(HttpRequest {
                method: "GET".into(),
                url: url.into(),
                headers: vec![],
                body: vec![],
                timeout: None,
            })
        };
        assert!(call(http("https://a.example.com/x")).is_ok());
        assert!(call(http("https://api.partner.test:8443/")).is_ok());
        not_granted(call(http("https://api.partner.test/")));
        assert!(matches!(
            call(http("ftp://a.example.com/")),
            Err(HostError::Invalid(_))
        ));
        let sql = |database: &str| SqlStatement {
            database: database.into(),
            statement: "select 1".into(),
            params: vec![],
        };
        assert!(call(CapabilityCall::SqlExecute(sql("reports"))).is_ok());
        not_granted(call(CapabilityCall::SqlQuery(sql("crm"))));
        assert!(
            call(CapabilityCall::Secret {
                name: "sms-token".into()
            })
            .is_ok()
        );
    }

    #[test]
    fn allowed_ranges_let_through_also_in_mapped_form() {
        let allowed: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(check_address("127.0.0.1".parse().unwrap(), &allowed).is_ok());
        assert!(check_address("::ffff:127.0.0.1".parse().unwrap(), &allowed).is_ok());
        let e = check_address("10.0.0.1".parse().unwrap(), &allowed).unwrap_err();
        assert!(e.contains("10.0.0.1") && e.contains("private"), "{e}");
        assert!(check_address("::1".parse().unwrap(), &allowed).is_err());
        assert!(check_address("8.8.8.8".parse().unwrap(), &[]).is_ok());
    }

    #[test]
    fn a_tenant_reaches_only_the_private_ranges_its_ceiling_allows() {
        let s = Settings::from_yaml_str(
            "tenants:\n  acme:\n    ceiling: {allow_private: ['10.20.0.0/16']}\n",
        )
        .unwrap();
        let acme = allowed_private(&s, "acme");
        assert!(check_address("10.20.1.2".parse().unwrap(), acme).is_ok());
        assert!(check_address("10.21.1.2".parse().unwrap(), acme).is_err());
        assert!(allowed_private(&s, "initech").is_empty());
    }

    #[test]
    fn the_ceiling_sets_the_upload_limit_and_the_invocation_caps() {
        let mut ceiling = Ceiling::default();
        assert_eq!(upload_limit(&ceiling, 1024), 1024);
        assert_eq!(InvocationCaps::of(&ceiling).apply(100, 200), (100, 200));
        ceiling.upload_bytes = Some(64 * 1024 * 1024);
        ceiling.fuel = Some(50);
        assert_eq!(upload_limit(&ceiling, 1024), 64 * 1024 * 1024);
        assert_eq!(InvocationCaps::of(&ceiling).apply(100, 200), (50, 200));
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

    #[test]
    fn run_bounds_are_the_ceilings_and_none_without_one() {
        assert_eq!(run_bounds(None), RunBounds::default());
        let ceiling = Ceiling {
            concurrency: Some(3),
            fuel: Some(1_000_000),
            memory_bytes: Some(16 << 20),
            ..Ceiling::default()
        };
        let bounds = run_bounds(Some(&ceiling));
        assert_eq!(
            bounds,
            RunBounds {
                concurrency: Some(3),
                invocation: InvocationCaps {
                    fuel: Some(1_000_000),
                    memory_bytes: Some(16 << 20),
                },
            }
        );
        assert_eq!(run_bounds(Some(&Ceiling::default())), RunBounds::default());
    }
}
