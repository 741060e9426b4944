//! Grants and settings as data: what the operator allows each tenant (the ceiling), what each
//! tenant grants each applet, and the tenant's SMTP server, databases and secrets.
//!
//! Loaded from YAML or JSON. Unknown fields are refused (a misspelt `alow_private` must not
//! silently grant nothing, or worse, be ignored while the operator believes it applies), and
//! every error names the path of the field it is about.

use coda_types::kv::KvLimits;
use coda_types::names::NameKind;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::pattern::HostPattern;

/// The default and maximum per-call HTTP timeout: an applet may ask for less, never more.
pub const DEFAULT_HTTP_MAX_TIMEOUT_MS: u64 = 10_000;
/// The default cap on an HTTP response body, enforced while it streams in.
pub const DEFAULT_HTTP_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// The default cap on an HTTP request body.
pub const DEFAULT_HTTP_MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// Redirects followed at most, each re-checked against the grant.
pub const DEFAULT_HTTP_MAX_REDIRECTS: u32 = 5;
/// The default time one SQL statement may run.
pub const DEFAULT_SQL_STATEMENT_TIMEOUT_MS: u64 = 5_000;
/// The default cap on rows a query returns; more is an error, not a silent truncation.
pub const DEFAULT_SQL_MAX_ROWS: usize = 1000;
/// The default cap on the bytes of a query's result (text and JSON by their length, other
/// values 8 bytes each), counted while rows come in: the row cap alone lets 1000 rows of
/// 16 MiB values through.
pub const DEFAULT_SQL_MAX_RESULT_BYTES: u64 = 16 * 1024 * 1024;
/// The default cap on a tenant SQLite database's file (`PRAGMA max_page_count`, set by the
/// host on its connection): within one statement's time limit a tenant can write about a
/// gigabyte, and nothing else stops it filling the disk the host's store lives on.
pub const DEFAULT_SQL_MAX_DATABASE_BYTES: u64 = 1024 * 1024 * 1024;
/// The default cap on recipients (to + cc) of one message.
pub const DEFAULT_MAX_RECIPIENTS: u32 = 50;
/// The default SMTP timeout.
pub const DEFAULT_SMTP_TIMEOUT_MS: u64 = 10_000;

/// Everything this crate needs: operator-wide limits and, per tenant, ceiling, grants and
/// settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub http: HttpSettings,
    #[serde(default)]
    pub sql: SqlSettings,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSettings>,
}

/// Operator-wide HTTP limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// The longest a call may take, redirects and body included; also the default.
    #[serde(default = "default_http_max_timeout_ms")]
    pub max_timeout_ms: u64,
    #[serde(default = "default_http_max_response_bytes")]
    pub max_response_bytes: u64,
    #[serde(default = "default_http_max_request_bytes")]
    pub max_request_bytes: u64,
    #[serde(default = "default_http_max_redirects")]
    pub max_redirects: u32,
    /// Static name → address overrides, like curl's `--resolve`. The address rules still
    /// apply to the address given here.
    #[serde(default)]
    pub resolve: BTreeMap<String, IpAddr>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_timeout_ms: DEFAULT_HTTP_MAX_TIMEOUT_MS,
            max_response_bytes: DEFAULT_HTTP_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_HTTP_MAX_REQUEST_BYTES,
            max_redirects: DEFAULT_HTTP_MAX_REDIRECTS,
            resolve: BTreeMap::new(),
        }
    }
}

/// Operator-wide SQL limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSettings {
    #[serde(default = "default_sql_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    #[serde(default = "default_sql_max_rows")]
    pub max_rows: usize,
    #[serde(default = "default_sql_max_result_bytes")]
    pub max_result_bytes: u64,
    /// SQLite only: a PostgreSQL server bounds its own disk.
    #[serde(default = "default_sql_max_database_bytes")]
    pub max_database_bytes: u64,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            statement_timeout_ms: DEFAULT_SQL_STATEMENT_TIMEOUT_MS,
            max_rows: DEFAULT_SQL_MAX_ROWS,
            max_result_bytes: DEFAULT_SQL_MAX_RESULT_BYTES,
            max_database_bytes: DEFAULT_SQL_MAX_DATABASE_BYTES,
        }
    }
}

/// One tenant: the operator's ceiling, the tenant's grants per applet, and its settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    #[serde(default)]
    pub ceiling: Ceiling,
    /// Keyed by applet name (`send-sms`), or name and version (`send-sms@1.2.0`); a pinned
    /// entry wins over the unpinned one for that version.
    #[serde(default)]
    pub grants: BTreeMap<String, AppletGrant>,
    #[serde(default)]
    pub smtp: Option<SmtpSettings>,
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseUrl>,
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
}

/// What the operator allows a tenant at most. Everything defaults to nothing: deny by
/// default applies to the operator's file too.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    #[serde(default)]
    pub http_hosts: Vec<HostPattern>,
    /// Address ranges otherwise refused (loopback, private, link-local…) that this tenant's
    /// HTTP calls may reach, e.g. `10.20.0.0/16` for a gateway on the operator's network.
    #[serde(default)]
    pub allow_private: Vec<IpNet>,
    #[serde(default)]
    pub email: bool,
    #[serde(default = "default_max_recipients")]
    pub max_recipients: u32,
    #[serde(default)]
    pub databases: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub interactions: bool,
    /// Messages the tenant may send per hour (a rolling hour), counted at the email
    /// capability; none: no limit beyond `email`.
    #[serde(default)]
    pub email_per_hour: Option<u32>,
    /// How many secrets the tenant may store (the service's cap: its tenants name their own
    /// secrets, so `secrets` above stays empty there). None: none at all in the service.
    #[serde(default)]
    pub max_secrets: Option<u32>,
    /// Fuel per invocation, at most the runtime's default.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Linear memory per invocation, in bytes.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// The largest applet component the tenant may upload, in bytes.
    #[serde(default)]
    pub upload_bytes: Option<u64>,
    /// Runs of the tenant stepping at once.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// The tenant's key-value store and what it may hold (`{}` for the defaults); none: no
    /// key-value store at all.
    #[serde(default)]
    pub kv: Option<KvLimits>,
}

impl Default for Ceiling {
    fn default() -> Self {
        Ceiling {
            http_hosts: Vec::new(),
            allow_private: Vec::new(),
            email: false,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            databases: Vec::new(),
            secrets: Vec::new(),
            interactions: false,
            email_per_hour: None,
            max_secrets: None,
            fuel: None,
            memory_bytes: None,
            upload_bytes: None,
            concurrency: None,
            kv: None,
        }
    }
}

/// What a tenant grants one applet; the effective grant is this intersected with the
/// tenant's [`Ceiling`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppletGrant {
    #[serde(default)]
    pub http: Vec<HostPattern>,
    #[serde(default)]
    pub email: bool,
    #[serde(default)]
    pub sql: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub interactions: bool,
    /// Key prefixes of the tenant's key-value store the applet may use (`contact/`); `""`
    /// grants every key.
    #[serde(default)]
    pub kv: Vec<String>,
}

impl AppletGrant {
    /// The secrets it names follow the secrets' naming rule, so a grant cannot name a
    /// secret that could never be set (`../secrets.key`).
    pub fn check_names(&self) -> Result<(), coda_types::names::NameError> {
        self.secrets
            .iter()
            .try_for_each(|name| coda_types::names::check_name(NameKind::Secret, name))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// Defaults by `tls`: 25 (none), 587 (starttls), 465 (tls).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    /// The NAMES of the tenant secrets holding the credentials, never the values.
    #[serde(default)]
    pub username_secret: Option<String>,
    #[serde(default)]
    pub password_secret: Option<String>,
    /// Credentials given directly (the service's operator sets the SMTP server for the
    /// tenant, so they are the operator's, not the tenant's secrets). The password is never
    /// shown to the tenant.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// The From of every message, e.g. `Acme Support <support@acme.example>`.
    pub from: String,
    #[serde(default = "default_smtp_timeout_ms")]
    pub timeout_ms: u64,
}

impl SmtpSettings {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    #[default]
    Starttls,
    Tls,
}

/// Where a named database lives: `sqlite:/path/to/file.db` or `postgres://user@host/db`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            // `sqlite:///abs` and `sqlite:/abs` both name /abs; `sqlite:rel` is relative.
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(
                    "a sqlite: database needs a path, e.g. sqlite:/var/lib/coda/acme.db".into(),
                );
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<tokio_postgres::Config>()
                .map_err(|e| format!("not a valid PostgreSQL URL: {e}"))?;
            Ok(DatabaseUrl::Postgres(text))
        } else {
            Err("a database is `sqlite:PATH` or `postgres://…`".into())
        }
    }
}

impl DatabaseUrl {
    /// The URL without its credentials, for showing: a user and password become
    /// [`HIDDEN`](crate::ceiling_doc::HIDDEN) (`postgres://***@db/crm`), as does a password
    /// in the query, so the reader sees that there are some, and the operator's ceiling
    /// written back as shown keeps them (`crate::ceiling_doc`).
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite:{}", path.display()),
            DatabaseUrl::Postgres(text) => match url::Url::parse(text) {
                Ok(mut url) => {
                    let had_credentials = !url.username().is_empty() || url.password().is_some();
                    let _ = url.set_password(None);
                    let _ = url.set_username(if had_credentials {
                        crate::ceiling_doc::HIDDEN
                    } else {
                        ""
                    });
                    // A password may sit in the query too (`?password=`).
                    coda_types::scrub::redact_url(url.as_str())
                }
                Err(_) => "postgres://<redacted>".into(),
            },
        }
    }
}

// The URL may carry a password: print only the kind and, for SQLite, the path.
impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            DatabaseUrl::Postgres(_) => f.write_str("postgres://<redacted>"),
        }
    }
}

/// A secret value. Debug and Display print `<redacted>`, so a secret cannot reach a log or
/// an error message by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A settings file that could not be used, with the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", source_prefix(.source_name), if .path.is_empty() { "(settings)" } else { .path.as_str() })]
pub struct SettingsError {
    /// The file, when loaded from one.
    pub source_name: Option<String>,
    /// The field, e.g. `tenants.acme.ceiling.http_hosts[0]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

fn source_prefix(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!("{n}: ")).unwrap_or_default()
}

impl SettingsError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError {
            source_name: None,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl Settings {
    /// Reads a settings file: JSON when its name ends in `.json`, YAML otherwise.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Settings, SettingsError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text =
            coda_types::files::read_text_capped(path, coda_types::files::MAX_CONFIG_FILE_BYTES)
                .map_err(|e| SettingsError {
                    source_name: Some(name.clone()),
                    path: String::new(),
                    message: format!("the settings file: {e}"),
                })?;
        let parsed = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            Settings::from_json_str(&text)
        } else {
            Settings::from_yaml_str(&text)
        };
        parsed.map_err(|e| SettingsError {
            source_name: Some(name),
            ..e
        })
    }

    pub fn from_yaml_str(text: &str) -> Result<Settings, SettingsError> {
        let de = coda_types::yaml::deserializer(text)
            .map_err(|e| SettingsError::new(String::new(), format!("the settings file {e}")))?;
        let settings: Settings = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = field_path(&e);
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            SettingsError::new(path, format!("{inner}{location}"))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn from_json_str(text: &str) -> Result<Settings, SettingsError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let settings: Settings = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = field_path(&e);
            SettingsError::new(path, e.into_inner().to_string())
        })?;
        de.end()
            .map_err(|e| SettingsError::new("", format!("text after the settings: {e}")))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what one field cannot check alone: grant keys, that names in the ceiling exist,
    /// that SMTP credentials name secrets the tenant has.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.http.max_redirects > 20 {
            return Err(SettingsError::new(
                "http.max_redirects",
                "at most 20 redirects may be followed",
            ));
        }
        if self.sql.max_rows == 0 {
            return Err(SettingsError::new("sql.max_rows", "must be at least 1"));
        }
        if self.sql.max_result_bytes == 0 {
            return Err(SettingsError::new(
                "sql.max_result_bytes",
                "must be at least 1",
            ));
        }
        if self.sql.max_database_bytes < 65536 {
            return Err(SettingsError::new(
                "sql.max_database_bytes",
                "must be at least 65536 (a few pages of SQLite)",
            ));
        }
        for host in self.http.resolve.keys() {
            if host.is_empty() || host.contains(['/', ':', ' ']) {
                return Err(SettingsError::new(
                    format!("http.resolve.{host}"),
                    "a resolve entry maps a host name (no port or scheme) to an address",
                ));
            }
        }
        for (name, tenant) in &self.tenants {
            let at = |rest: &str| format!("tenants.{name}.{rest}");
            for (key, grant) in &tenant.grants {
                if !crate::grants::is_valid_grant_key(key) {
                    return Err(SettingsError::new(
                        at(&format!("grants.{key}")),
                        "a grant is keyed by an applet name, optionally with @version",
                    ));
                }
                grant.check_names().map_err(|e| {
                    SettingsError::new(at(&format!("grants.{key}.secrets")), e.to_string())
                })?;
            }
            // The secrets themselves and the ceiling's list: the same rule as the API's.
            for secret in tenant.secrets.keys().chain(&tenant.ceiling.secrets) {
                coda_types::names::check_name(NameKind::Secret, secret)
                    .map_err(|e| SettingsError::new(at("secrets"), e.to_string()))?;
            }
            for (field, value) in [
                ("ceiling.fuel", tenant.ceiling.fuel),
                ("ceiling.memory_bytes", tenant.ceiling.memory_bytes),
                ("ceiling.upload_bytes", tenant.ceiling.upload_bytes),
                (
                    "ceiling.concurrency",
                    tenant.ceiling.concurrency.map(u64::from),
                ),
            ] {
                if value == Some(0) {
                    return Err(SettingsError::new(
                        at(field),
                        "must be at least 1 (leave it out for the host's default)",
                    ));
                }
            }
            for (i, db) in tenant.ceiling.databases.iter().enumerate() {
                if !tenant.databases.contains_key(db) {
                    return Err(SettingsError::new(
                        at(&format!("ceiling.databases[{i}]")),
                        format!("database '{db}' is not configured under tenants.{name}.databases"),
                    ));
                }
            }
            if let Some(smtp) = &tenant.smtp {
                let from: Result<lettre::message::Mailbox, _> = smtp.from.parse();
                if let Err(e) = from {
                    return Err(SettingsError::new(
                        at("smtp.from"),
                        format!("'{}' is not a valid address: {e}", smtp.from),
                    ));
                }
                if smtp.username_secret.is_some() != smtp.password_secret.is_some() {
                    return Err(SettingsError::new(
                        at("smtp"),
                        "username_secret and password_secret go together",
                    ));
                }
                if smtp.username.is_some() != smtp.password.is_some() {
                    return Err(SettingsError::new(
                        at("smtp"),
                        "username and password go together",
                    ));
                }
                if smtp.username.is_some() && smtp.username_secret.is_some() {
                    return Err(SettingsError::new(
                        at("smtp"),
                        "give the credentials either directly (username, password) or as secrets (username_secret, password_secret), not both",
                    ));
                }
                for (field, secret) in [
                    ("smtp.username_secret", &smtp.username_secret),
                    ("smtp.password_secret", &smtp.password_secret),
                ] {
                    if let Some(secret) = secret
                        && !tenant.secrets.contains_key(secret)
                    {
                        return Err(SettingsError::new(
                            at(field),
                            format!("secret '{secret}' is not set under tenants.{name}.secrets"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl TenantSettings {
    /// The operator's ceiling document for one tenant of the service (`coda serve`):
    /// `ceiling`, `smtp` and `databases`, as JSON. Grants and secrets are the tenant's to
    /// write (through its own API), so they are refused here, as are SMTP credentials kept
    /// in the tenant's secrets: the operator gives its own. Errors name the field.
    pub fn from_ceiling_json(
        tenant: &str,
        json: &serde_json::Value,
    ) -> Result<TenantSettings, SettingsError> {
        let settings: TenantSettings = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = field_path(&e);
            SettingsError::new(path, e.into_inner().to_string())
        })?;
        if !settings.grants.is_empty() {
            return Err(SettingsError::new(
                "grants",
                "grants are the tenant's to set (PUT /v1/grants/{applet}), not part of the ceiling",
            ));
        }
        if !settings.secrets.is_empty() {
            return Err(SettingsError::new(
                "secrets",
                "secrets are the tenant's to set (PUT /v1/secrets/{name}), not part of the ceiling",
            ));
        }
        if !settings.ceiling.secrets.is_empty() {
            return Err(SettingsError::new(
                "ceiling.secrets",
                "the service's tenants name their own secrets: cap how many with ceiling.max_secrets",
            ));
        }
        if let Some(smtp) = &settings.smtp
            && smtp.username_secret.is_some()
        {
            return Err(SettingsError::new(
                "smtp.username_secret",
                "give the SMTP server's credentials as smtp.username and smtp.password",
            ));
        }
        let mut all = Settings::default();
        all.tenants.insert(tenant.to_owned(), settings);
        all.validate().map_err(|e| {
            let prefix = format!("tenants.{tenant}.");
            SettingsError {
                path: e.path.strip_prefix(&prefix).unwrap_or(&e.path).to_owned(),
                ..e
            }
        })?;
        Ok(all.tenants.remove(tenant).unwrap_or_default())
    }

    /// What the tenant may see of its ceiling document: no SMTP password, no credentials in
    /// database URLs.
    pub fn ceiling_view(&self) -> serde_json::Value {
        let smtp = self.smtp.as_ref().map(|smtp| {
            serde_json::json!({
                "host": smtp.host,
                "port": smtp.port(),
                "tls": smtp.tls,
                "from": smtp.from,
                "timeout_ms": smtp.timeout_ms,
                "authenticated": smtp.username.is_some() || smtp.username_secret.is_some(),
            })
        });
        let databases: serde_json::Map<String, serde_json::Value> = self
            .databases
            .iter()
            .map(|(name, url)| (name.clone(), url.redacted().into()))
            .collect();
        serde_json::json!({
            "ceiling": self.ceiling,
            "smtp": smtp,
            "databases": databases,
        })
    }
}

/// serde_path_to_error writes the root as "."; an empty path reads better.
fn field_path<E>(e: &serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    if path == "." { String::new() } else { path }
}

fn default_http_max_timeout_ms() -> u64 {
    DEFAULT_HTTP_MAX_TIMEOUT_MS
}
fn default_http_max_response_bytes() -> u64 {
    DEFAULT_HTTP_MAX_RESPONSE_BYTES
}
fn default_http_max_request_bytes() -> u64 {
    DEFAULT_HTTP_MAX_REQUEST_BYTES
}
fn default_http_max_redirects() -> u32 {
    DEFAULT_HTTP_MAX_REDIRECTS
}
fn default_sql_statement_timeout_ms() -> u64 {
    DEFAULT_SQL_STATEMENT_TIMEOUT_MS
}
fn default_sql_max_rows() -> usize {
    DEFAULT_SQL_MAX_ROWS
}
fn default_sql_max_result_bytes() -> u64 {
    DEFAULT_SQL_MAX_RESULT_BYTES
}
fn default_sql_max_database_bytes() -> u64 {
    DEFAULT_SQL_MAX_DATABASE_BYTES
}
fn default_max_recipients() -> u32 {
    DEFAULT_MAX_RECIPIENTS
}
fn default_smtp_timeout_ms() -> u64 {
    DEFAULT_SMTP_TIMEOUT_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let e =
            Settings::from_yaml_str("tenants:\n  acme:\n    ceiling:\n      alow_private: []\n")
                .unwrap_err();
        assert_eq!(e.path, "tenants.acme.ceiling.alow_private");
        assert!(e.message.contains("alow_private"), "{e}");
    }

    #[test]
    fn bad_pattern_names_its_field() {
        let e = Settings::from_yaml_str(
            "tenants:\n  acme:\n    grants:\n      sms:\n        http: ['a.*.com']\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "tenants.acme.grants.sms.http[0]", "{e}");
    }

    #[test]
    fn a_grants_file_names_secrets_by_the_secrets_rule() {
        for (yaml, path) in [
            (
                "tenants:\n  acme:\n    grants:\n      sms: { secrets: ['../secrets.key'] }\n",
                "tenants.acme.grants.sms.secrets",
            ),
            (
                "tenants:\n  acme:\n    secrets: { 'a/b': v }\n",
                "tenants.acme.secrets",
            ),
            (
                "tenants:\n  acme:\n    ceiling: { secrets: [''] }\n",
                "tenants.acme.secrets",
            ),
        ] {
            let e = Settings::from_yaml_str(yaml).unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e}");
            assert!(e.message.contains("secret name"), "{e}");
        }
        Settings::from_yaml_str(
            "tenants:\n  acme:\n    secrets: { sms-token: v }\n    grants:\n      sms: { secrets: [sms-token] }\n",
        )
        .unwrap();
    }

    #[test]
    fn smtp_credentials_must_name_existing_secrets() {
        let e = Settings::from_yaml_str(
            "tenants:\n  acme:\n    smtp: { host: mail, from: a@b.example, username_secret: u, password_secret: p }\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "tenants.acme.smtp.username_secret", "{e}");
    }

    /// A grants file whose secrets alias one 20 KB value a hundred times (2 MB) is refused
    /// before it is built, naming the limit (issue 14); a few aliases are fine.
    #[test]
    fn aliases_that_expand_past_the_limit_are_refused() {
        let file = |n: usize| {
            let mut text = format!(
                "tenants:\n  acme:\n    secrets:\n      s: &a {}\n",
                "x".repeat(20 * 1024)
            );
            for i in 0..n {
                text.push_str(&format!("      s{i}: *a\n"));
            }
            text
        };
        let e = Settings::from_yaml_str(&file(100)).unwrap_err();
        assert_eq!(e.path, "");
        assert!(
            e.message.starts_with(
                "the settings file expands through its anchors and aliases to more than 1048576 bytes"
            ),
            "{e}"
        );
        let s = Settings::from_yaml_str(&file(3)).unwrap();
        assert_eq!(s.tenants["acme"].secrets["s2"].expose().len(), 20 * 1024);
    }

    #[test]
    fn json_loads_and_secrets_are_redacted() {
        let s = Settings::from_json_str(
            r#"{"tenants":{"acme":{"secrets":{"token":"hunter2"},"databases":{"db":"sqlite:/tmp/x.db","pg":"postgres://u:pw@h/db"}}}}"#,
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("pw@"),
            "{printed}"
        );
        assert_eq!(s.tenants["acme"].secrets["token"].expose(), "hunter2");
        assert_eq!(s.http.max_timeout_ms, DEFAULT_HTTP_MAX_TIMEOUT_MS);
    }

    #[test]
    fn files_load_by_extension_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("caps.yaml");
        std::fs::write(&yaml, "tenants:\n  acme:\n    ceiling: { email: true }\n").unwrap();
        assert!(
            Settings::from_file(&yaml).unwrap().tenants["acme"]
                .ceiling
                .email
        );
        let json = dir.path().join("caps.json");
        std::fs::write(&json, r#"{"sql": {"max_rows": 0}}"#).unwrap();
        let e = Settings::from_file(&json).unwrap_err();
        assert_eq!(e.path, "sql.max_rows");
        assert!(
            e.to_string().starts_with(&json.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn the_example_file_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/capabilities.example.yaml");
        let s = Settings::from_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.tenants["acme"].grants.len(), 5);
    }

    #[test]
    fn the_services_ceiling_document_is_checked_and_shown_without_credentials() {
        let doc = serde_json::json!({
            "ceiling": { "http_hosts": ["*.example.com"], "email": true, "email_per_hour": 10,
                         "databases": ["crm"], "max_secrets": 3, "fuel": 1000 },
            "smtp": { "host": "mail.test", "from": "a@b.example", "username": "u",
                      "password": "hunter2" },
            "databases": { "crm": "postgres://app:pw@db.test/crm",
                           "ops": "postgres://db.test/ops?sslmode=require&password=hunter3" },
        });
        let t = TenantSettings::from_ceiling_json("acme", &doc).unwrap();
        assert_eq!(t.ceiling.email_per_hour, Some(10));
        let view = t.ceiling_view().to_string();
        assert!(
            !view.contains("hunter2")
                && !view.contains("hunter3")
                && !view.contains("pw")
                && !view.contains("app"),
            "{view}"
        );
        assert!(view.contains("db.test/crm"), "{view}");

        let refused = |doc: serde_json::Value| {
            TenantSettings::from_ceiling_json("acme", &doc)
                .unwrap_err()
                .path
        };
        assert_eq!(
            refused(serde_json::json!({ "ceiling": { "fuel": 0 } })),
            "ceiling.fuel"
        );
        assert_eq!(
            refused(serde_json::json!({ "ceiling": { "databases": ["x"] } })),
            "ceiling.databases[0]"
        );
        assert_eq!(
            refused(serde_json::json!({ "ceiling": { "email": "yes" } })),
            "ceiling.email"
        );
        assert_eq!(
            refused(serde_json::json!({ "ceiling": { "secrets": ["a"] } })),
            "ceiling.secrets"
        );
        assert_eq!(
            refused(serde_json::json!({ "grants": { "sms": {} } })),
            "grants"
        );
    }

    #[test]
    fn bad_database_url_is_refused() {
        let e = Settings::from_yaml_str("tenants:\n  acme:\n    databases:\n      d: mysql://x\n")
            .unwrap_err();
        assert_eq!(e.path, "tenants.acme.databases.d", "{e}");
    }
}
