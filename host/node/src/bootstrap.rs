//! What the operator gives a node before it serves: the key tenants' secrets are sealed
//! with ([`secrets_key`]) and the tenants a settings file seeds the store with ([`seed`]).

use std::path::Path;

use coda_capabilities::Settings;
use coda_capabilities::settings::TenantSettings;
use coda_store::{SecretsKey, Store};

use crate::SetupError;

/// The file holding the generated secrets key, in the data directory.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The key tenants' secrets are sealed with, in this order: `configured` (the operator's
/// configuration file), `$CODA_SECRETS_KEY`, the data directory's `secrets.key`, or a new
/// key written there (mode 0600) on the first start, which is said on stderr. Losing that
/// file loses the secrets: an operator should configure a key kept elsewhere.
pub fn secrets_key(configured: Option<&str>, data_dir: &Path) -> Result<SecretsKey, SetupError> {
    let invalid = |from: &str, e: String| SetupError::Usage(format!("{from}: {e}"));
    if let Some(text) = configured {
        return SecretsKey::parse(text).map_err(|e| invalid("the configured secrets key", e));
    }
    if let Ok(text) = std::env::var("CODA_SECRETS_KEY")
        && !text.trim().is_empty()
    {
        return SecretsKey::parse(&text).map_err(|e| invalid("CODA_SECRETS_KEY", e));
    }
    use cap_std::fs::{Dir, OpenOptions};
    use std::io::{Read, Write};
    let io = |e: std::io::Error| {
        SetupError::Io(format!(
            "{}: {e}",
            data_dir.join(SECRETS_KEY_FILE).display()
        ))
    };
    let dir = Dir::open_ambient_dir(data_dir, cap_std::ambient_authority()).map_err(io)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use cap_std::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match dir.open_with(SECRETS_KEY_FILE, &options) {
        Ok(mut file) => {
            let key = SecretsKey::generate().map_err(SetupError::Internal)?;
            file.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            let line = format!(
                "coda serve: no secrets key configured (CODA_SECRETS_KEY): generated one into {}\n",
                data_dir.join(SECRETS_KEY_FILE).display()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // The key file is a line of text: read no more than any config file.
            let mut text = String::new();
            dir.open(SECRETS_KEY_FILE)
                .and_then(|f| {
                    f.take(coda_types::files::MAX_CONFIG_FILE_BYTES)
                        .read_to_string(&mut text)
                })
                .map_err(io)?;
            SecretsKey::parse(&text)
                .map_err(|e| invalid(&data_dir.join(SECRETS_KEY_FILE).display().to_string(), e))
        }
        Err(e) => Err(io(e)),
    }
}

/// Seeds the store from a settings file (`coda serve --grants FILE`), the operator's
/// bootstrap: for each tenant of the file, the tenant (created without a token if new), its
/// ceiling document (the file's ceiling, SMTP server and databases; SMTP credentials the file
/// keeps in secrets become the server's own), its grants and its secrets, replacing those
/// the store has under the same names.
pub async fn seed(store: &Store, key: &SecretsKey, file: &Path) -> Result<(), SetupError> {
    let invalid = |e: String| SetupError::InvalidGrants(format!("{}: {e}", file.display()));
    let settings = Settings::from_file(file).map_err(|e| invalid(e.to_string()))?;
    let text = coda_types::files::read_text_capped(file, coda_types::files::MAX_CONFIG_FILE_BYTES)
        .map_err(|e| invalid(e.to_string()))?;
    let raw: serde_json::Value = if file.extension().is_some_and(|x| x == "json") {
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?
    } else {
        coda_types::yaml::from_str(&text).map_err(|e| invalid(e.to_string()))?
    };
    let io = |e: coda_store::StoreError| SetupError::Io(e.to_string());
    let now = coda_types::time::now_ms();
    for (tenant, parsed) in &settings.tenants {
        let raw = &raw["tenants"][tenant];
        let mut ceiling = raw["ceiling"].clone();
        if let Some(object) = ceiling.as_object_mut() {
            let named = object
                .remove("secrets")
                .and_then(|s| s.as_array().map(Vec::len))
                .unwrap_or(0);
            let max = parsed
                .ceiling
                .max_secrets
                .unwrap_or(0)
                .max(u32::try_from(named.max(parsed.secrets.len())).unwrap_or(u32::MAX));
            object.insert("max_secrets".into(), max.into());
        }
        let mut smtp = raw["smtp"].clone();
        if let (Some(object), Some(parsed_smtp)) = (smtp.as_object_mut(), &parsed.smtp) {
            object.remove("username_secret");
            object.remove("password_secret");
            let secret = |name: &Option<String>| {
                name.as_ref()
                    .and_then(|n| parsed.secrets.get(n))
                    .map(|s| s.expose().to_owned())
            };
            if let (Some(user), Some(password)) = (
                secret(&parsed_smtp.username_secret),
                secret(&parsed_smtp.password_secret),
            ) {
                object.insert("username".into(), user.into());
                object.insert("password".into(), password.into());
            }
        }
        let mut document = serde_json::json!({ "ceiling": ceiling });
        if !smtp.is_null() {
            document["smtp"] = smtp;
        }
        if !raw["databases"].is_null() {
            document["databases"] = raw["databases"].clone();
        }
        TenantSettings::from_ceiling_json(tenant, &document)
            .map_err(|e| invalid(format!("tenants.{tenant}: {e}")))?;
        store.ensure_tenant(tenant, now).await.map_err(io)?;
        store
            .set_ceiling(tenant, &document, now)
            .await
            .map_err(io)?;
        for applet in parsed.grants.keys() {
            store
                .put_grant(tenant, applet, &raw["grants"][applet], now)
                .await
                .map_err(io)?;
        }
        for (name, value) in &parsed.secrets {
            store
                .put_secret(tenant, name, value.expose(), key, u32::MAX, now)
                .await
                .map_err(io)?;
        }
    }
    Ok(())
}
