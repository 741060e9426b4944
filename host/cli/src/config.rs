//! `coda serve --config FILE`: the service's settings in a file (YAML or JSON), so an
//! operator's unit file holds one flag. Every field is optional; a flag given on the
//! command line wins over the file. Unknown fields are refused, naming the field, so a
//! misspelt setting is an error rather than a default silently kept.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How the service writes its logs (stderr); `--log-format` (global, once merged) wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Lines for people
    #[default]
    Text,
    /// One JSON object per line, for a log collector
    Json,
}

/// The file, as written. Relative paths in it are relative to the file's directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The address to listen on.
    pub listen: Option<String>,
    /// The SQLite database [default: coda.db in `data_dir`].
    pub db: Option<PathBuf>,
    /// Where the service keeps its files.
    pub data_dir: Option<PathBuf>,
    /// A directory of applet components (.wasm), besides the built-in ones.
    pub applets: Option<PathBuf>,
    /// Grants, SMTP servers, databases and secrets (YAML or JSON; `--grants`).
    pub grants: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// The key that encrypts tenants' secrets at rest.
    pub secrets_key_file: Option<PathBuf>,
    /// This node's id in its claims on runs (`--node-id`, `$CODA_NODE_ID`).
    pub node_id: Option<String>,
    /// The vendor keys whose signed packages tenants may install, each trusted for one
    /// vendor (`--trusted-vendors FILE` replaces them).
    pub trusted_vendors: Option<Vec<coda_package::TrustedVendor>>,
    /// Refuse unsigned uploads: tenants install only verified vendor packages
    /// (`--require-signed-packages`).
    pub require_signed_packages: Option<bool>,
    /// How long compiling one component may take, an upload or a built-in applet at start
    /// (`--compile-timeout-ms`).
    pub compile_timeout_ms: Option<u64>,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
}

/// The outbound webhooks' timings and bounds (each default is `coda-webhooks`'
/// `WebhookSettings::default`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The longest a connection to a receiver may take to open.
    pub connect_timeout_ms: Option<u64>,
    /// Added to the connect timeout, the longest a whole attempt may take.
    pub response_timeout_ms: Option<u64>,
    /// The wait after a first failed attempt, doubled by each further failure...
    pub retry_first_ms: Option<u64>,
    /// ... up to this.
    pub retry_max_ms: Option<u64>,
    /// How long a delivery is tried before it is marked failed.
    pub give_up_after_ms: Option<u64>,
    /// Attempts in flight on this node at once.
    pub max_in_flight: Option<usize>,
    /// Attempts in flight for one tenant at once.
    pub max_in_flight_per_tenant: Option<usize>,
    /// How often the loop looks for new events when idle.
    pub poll_ms: Option<u64>,
}

impl WebhooksConfig {
    /// The settings, each unset one its default; a bound of 0 is refused by name.
    pub fn settings(&self) -> Result<coda_webhooks::WebhookSettings, String> {
        let d = coda_webhooks::WebhookSettings::default();
        let settings = coda_webhooks::WebhookSettings {
            connect_timeout_ms: self.connect_timeout_ms.unwrap_or(d.connect_timeout_ms),
            response_timeout_ms: self.response_timeout_ms.unwrap_or(d.response_timeout_ms),
            retry_first_ms: self.retry_first_ms.unwrap_or(d.retry_first_ms),
            retry_max_ms: self.retry_max_ms.unwrap_or(d.retry_max_ms),
            give_up_after_ms: self.give_up_after_ms.unwrap_or(d.give_up_after_ms),
            max_in_flight: self.max_in_flight.unwrap_or(d.max_in_flight),
            max_in_flight_per_tenant: self
                .max_in_flight_per_tenant
                .unwrap_or(d.max_in_flight_per_tenant),
            poll_ms: self.poll_ms.unwrap_or(d.poll_ms),
        };
        for (name, value) in [
            ("connect_timeout_ms", settings.connect_timeout_ms),
            ("response_timeout_ms", settings.response_timeout_ms),
            ("retry_first_ms", settings.retry_first_ms),
            // 0 would retry at every poll, and fail every delivery at its first failure.
            ("retry_max_ms", settings.retry_max_ms),
            ("give_up_after_ms", settings.give_up_after_ms),
            ("poll_ms", settings.poll_ms),
            ("max_in_flight", settings.max_in_flight as u64),
            (
                "max_in_flight_per_tenant",
                settings.max_in_flight_per_tenant as u64,
            ),
        ] {
            if value == 0 {
                return Err(format!("webhooks.{name} must be above 0"));
            }
        }
        Ok(settings)
    }
}

/// The bounds on the API's connections and live tails (each default is a constant of
/// `coda-server`: `ConnLimits`, `DEFAULT_MAX_TAILS`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Another address that answers `/healthz` and `/readyz` only, with places of its own:
    /// a supervisor probing it is answered however many connections the API has.
    pub health_listen: Option<String>,
    /// Connections served at once (`--max-connections`); past it a new one gets a 503.
    pub max_connections: Option<usize>,
    /// Connections past the cap kept for `/healthz` and `/readyz` only.
    pub reserved_connections: Option<usize>,
    /// The longest wait for a request's head; also how long an idle keep-alive connection
    /// is kept.
    pub header_timeout_ms: Option<u64>,
    /// The longest a request's body may take to arrive.
    pub body_timeout_ms: Option<u64>,
    /// The longest a response write may wait on a client that does not read.
    pub write_timeout_ms: Option<u64>,
    /// Live tails (`GET /v1/runs/{id}/tail`) open at once, over all tenants.
    pub max_tails: Option<usize>,
    /// Live tails one tenant may have open at once.
    pub max_tails_per_tenant: Option<usize>,
}

/// The scheduler's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Due runs taken at once.
    pub batch: Option<usize>,
    /// Tries of a step whose applet failed with a retryable failure (1 = no retry).
    pub max_attempts: Option<u32>,
    /// On shutdown, how long the steps in flight get to commit.
    pub drain_ms: Option<u64>,
    /// Steps of one tenant running at once, unless its ceiling says otherwise.
    pub tenant_concurrency: Option<u32>,
    /// Due runs one tenant may have waiting before the API answers 429.
    pub tenant_queue: Option<u64>,
    /// How long a node's claim on a run lasts without renewal (`--lease-ms`,
    /// `$CODA_LEASE_MS`).
    pub lease_ms: Option<u64>,
    /// Starts alone of one step without a commit before its run is parked
    /// (`FlowLimits::max_step_starts`).
    pub max_step_starts: Option<u32>,
    /// Bytes a run's data and state may hold together (`FlowLimits::max_run_data_bytes`).
    pub max_run_data_bytes: Option<u64>,
    /// Steps of one run taken back to back under one claim (`FlowLimits::continue_steps`;
    /// 1: every step goes back to the queue).
    pub continue_steps: Option<u32>,
    /// How long one run's steps may go on back to back (`FlowLimits::continue_ms`).
    pub continue_ms: Option<u64>,
    /// How long an untaken named event or a held early interaction event is kept, ms
    /// (`FlowLimits::event_keep_ms`, 7 days).
    pub event_keep_ms: Option<u64>,
    /// Untaken named events (and, apart, held events) one interaction may keep
    /// (`FlowLimits::max_events_per_interaction`).
    pub max_events_per_interaction: Option<u64>,
    /// Untaken named events (and, apart, held events) one tenant may keep
    /// (`FlowLimits::max_events_per_tenant`).
    pub max_events_per_tenant: Option<u64>,
}

impl ServeConfig {
    /// Reads the file: JSON when its name ends in `.json`, YAML otherwise. An error names the
    /// file and the field.
    pub fn from_file(path: &Path) -> Result<ServeConfig, String> {
        let text =
            coda_types::files::read_text_capped(path, coda_types::files::MAX_CONFIG_FILE_BYTES)
                .map_err(|e| format!("the config file: {e}"))?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let mut config = ServeConfig::parse(&text, json)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        config.resolve_paths(path.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// Parses and checks the text; relative paths are left as written.
    pub fn parse(text: &str, json: bool) -> Result<ServeConfig, String> {
        let config: ServeConfig = if json {
            let mut de = serde_json::Deserializer::from_str(text);
            let config = serde_path_to_error::deserialize(&mut de).map_err(field_error)?;
            de.end()
                .map_err(|e| format!("text after the settings: {e}"))?;
            config
        } else if text.trim().is_empty() {
            // An empty YAML file is no settings, not an error.
            ServeConfig::default()
        } else {
            let de =
                coda_types::yaml::deserializer(text).map_err(|e| format!("the config file {e}"))?;
            serde_path_to_error::deserialize(de).map_err(field_error)?
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.listen.as_deref().is_some_and(|l| l.trim().is_empty()) {
            return Err("at `listen`: the address is empty".into());
        }
        if let Some(vendors) = &self.trusted_vendors {
            coda_package::TrustedKeys::new(vendors.iter().cloned())
                .map_err(|e| e.replacen("at `", "at `trusted_vendors", 1))?;
        }
        if self.compile_timeout_ms == Some(0) {
            return Err("at `compile_timeout_ms`: must be at least 1".into());
        }
        let s = &self.scheduler;
        for (field, value) in [
            ("batch", s.batch.map(|n| n as u64)),
            ("max_attempts", s.max_attempts.map(u64::from)),
            ("tenant_concurrency", s.tenant_concurrency.map(u64::from)),
            ("tenant_queue", s.tenant_queue),
            ("max_step_starts", s.max_step_starts.map(u64::from)),
            ("max_run_data_bytes", s.max_run_data_bytes),
            ("continue_steps", s.continue_steps.map(u64::from)),
            ("continue_ms", s.continue_ms),
            ("event_keep_ms", s.event_keep_ms),
            ("max_events_per_interaction", s.max_events_per_interaction),
            ("max_events_per_tenant", s.max_events_per_tenant),
        ] {
            if value == Some(0) {
                return Err(format!("at `scheduler.{field}`: must be at least 1"));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.db,
            &mut self.data_dir,
            &mut self.applets,
            &mut self.grants,
            &mut self.secrets_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// `at `scheduler.batch`: invalid type: …` (the field's path, then serde's message, which
/// names an unknown field and the ones expected).
fn field_error<E: std::fmt::Display>(e: serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." || path.is_empty() {
        inner.to_string()
    } else {
        format!("at `{path}`: {inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/serve.yaml"
        ));
        let config = ServeConfig::from_file(path).unwrap();
        assert_eq!(config.listen.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(config.log_format, Some(LogFormat::Json));
        assert!(config.scheduler.tenant_concurrency.is_some());
        // The example shows the run limits' defaults as they are.
        let flow = coda_flow::FlowLimits::default();
        assert_eq!(config.scheduler.max_step_starts, Some(flow.max_step_starts));
        assert_eq!(
            config.scheduler.max_run_data_bytes,
            Some(flow.max_run_data_bytes)
        );
        assert_eq!(config.scheduler.continue_steps, Some(flow.continue_steps));
        assert_eq!(config.scheduler.continue_ms, Some(flow.continue_ms));
        assert_eq!(config.scheduler.event_keep_ms, Some(flow.event_keep_ms));
        assert_eq!(
            config.scheduler.max_events_per_interaction,
            Some(flow.max_events_per_interaction)
        );
        assert_eq!(
            config.scheduler.max_events_per_tenant,
            Some(flow.max_events_per_tenant)
        );
        assert_eq!(config.compile_timeout_ms, Some(60_000));
        // Relative to the file's directory, not to wherever `coda serve` was started.
        assert!(config.grants.unwrap().starts_with(path.parent().unwrap()));
        // The example shows the webhooks' defaults as they are.
        let webhooks = config.webhooks.settings().unwrap();
        let defaults = coda_webhooks::WebhookSettings::default();
        assert_eq!(format!("{webhooks:?}"), format!("{defaults:?}"));
        let zero = WebhooksConfig {
            max_in_flight_per_tenant: Some(0),
            ..WebhooksConfig::default()
        };
        assert_eq!(
            zero.settings().unwrap_err(),
            "webhooks.max_in_flight_per_tenant must be above 0"
        );
        for (zero, name) in [
            (
                WebhooksConfig {
                    retry_max_ms: Some(0),
                    ..WebhooksConfig::default()
                },
                "retry_max_ms",
            ),
            (
                WebhooksConfig {
                    give_up_after_ms: Some(0),
                    ..WebhooksConfig::default()
                },
                "give_up_after_ms",
            ),
        ] {
            assert_eq!(
                zero.settings().unwrap_err(),
                format!("webhooks.{name} must be above 0")
            );
        }
        // The example shows the connections' defaults as they are.
        let http = config.http;
        let defaults = coda_server::ConnLimits::default();
        assert_eq!(http.max_connections, Some(defaults.max_connections));
        assert_eq!(
            http.reserved_connections,
            Some(defaults.reserved_connections)
        );
        assert_eq!(
            http.header_timeout_ms,
            Some(defaults.header_timeout.as_millis() as u64)
        );
        assert_eq!(
            http.body_timeout_ms,
            Some(defaults.body_timeout.as_millis() as u64)
        );
        assert_eq!(
            http.write_timeout_ms,
            Some(defaults.write_timeout.as_millis() as u64)
        );
        assert_eq!(http.max_tails, Some(coda_server::DEFAULT_MAX_TAILS));
        assert_eq!(
            http.max_tails_per_tenant,
            Some(coda_server::DEFAULT_MAX_TAILS_PER_TENANT)
        );
    }

    /// An operator's config file past `coda_types::files::MAX_CONFIG_FILE_BYTES` is refused
    /// by its size, before it is read whole (issue 14 left config files without a cap).
    #[test]
    fn a_config_file_past_the_cap_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        let e = ServeConfig::from_file(&path).unwrap_err();
        assert!(
            e.contains("serve.yaml") && e.contains("larger than the limit"),
            "{e}"
        );
        let e = coda_capabilities::Settings::from_file(&path).unwrap_err();
        assert!(e.to_string().contains("larger than the limit"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_refused_by_name() {
        // A config whose aliases expand 20 KB a hundred times over is refused before it is
        // built, naming the limit (issue 14).
        let big = format!(
            "listen: &a {}\ntrusted_vendors: [{}]\n",
            "x".repeat(20 * 1024),
            vec!["{vendor: *a, key: *a}"; 50].join(",")
        );
        let e = ServeConfig::parse(&big, false).unwrap_err();
        assert!(
            e.starts_with("the config file expands through its anchors and aliases to more than"),
            "{e}"
        );
        let e = ServeConfig::parse("listen: 0.0.0.0:80\nlistne: x\n", false).unwrap_err();
        assert!(e.contains("unknown field `listne`"), "{e}");
        let e = ServeConfig::parse("scheduler:\n  batchh: 3\n", false).unwrap_err();
        assert!(
            e.contains("at `scheduler.batchh`") && e.contains("unknown field"),
            "{e}"
        );
        let e = ServeConfig::parse(r#"{"log_format": "xml"}"#, true).unwrap_err();
        assert!(e.contains("at `log_format`") && e.contains("xml"), "{e}");
        let e = ServeConfig::parse("scheduler: {batch: many}", false).unwrap_err();
        assert!(e.contains("at `scheduler.batch`"), "{e}");
        let e =
            ServeConfig::parse("trusted_vendors: [{vendor: acme, key: nope}]", false).unwrap_err();
        assert!(e.contains("at `trusted_vendors[0].key`"), "{e}");
        let key = coda_package::SecretKey::generate().unwrap().public();
        let e = ServeConfig::parse(
            &format!(
                "trusted_vendors: [{{vendor: acme, key: '{key}'}}, {{vendor: globex, key: '{key}'}}]"
            ),
            false,
        )
        .unwrap_err();
        assert!(e.contains("at `trusted_vendors[1].key`"), "{e}");
        let config = ServeConfig::parse(
            &format!(
                "trusted_vendors: [{{vendor: acme, key: '{key}'}}]\nrequire_signed_packages: true"
            ),
            false,
        )
        .unwrap();
        assert_eq!(config.trusted_vendors.unwrap().len(), 1);
        assert_eq!(config.require_signed_packages, Some(true));
        let e = ServeConfig::parse("compile_timeout_ms: 0", false).unwrap_err();
        assert!(e.contains("at `compile_timeout_ms`"), "{e}");
        let e = ServeConfig::parse("compile_timeout_ms: soon", false).unwrap_err();
        assert!(e.contains("at `compile_timeout_ms`"), "{e}");
        let e = ServeConfig::parse("scheduler: {tenant_queue: 0}", false).unwrap_err();
        assert!(e.contains("scheduler.tenant_queue"), "{e}");
        assert!(ServeConfig::parse("", false).is_ok());
        assert!(ServeConfig::parse(r#"{"listen": "a:1"} x"#, true).is_err());
    }
}
