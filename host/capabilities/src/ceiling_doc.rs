//! The operator's ceiling document written back as it was read: what `GET` shows in place
//! of a hidden credential, sent back, keeps the stored credential.
//!
//! `GET /v1/operator/tenants/{tenant}/ceiling` never shows a credential
//! ([`TenantSettings::ceiling_view`], [`DatabaseUrl::redacted`]), so without this rule an
//! operator changing one limit would have to type every password again. The one rule, for
//! the two places a credential lives:
//!
//! - **SMTP**: the view leaves `username` and `password` out and says `authenticated`. An
//!   `smtp` without `username` and `password` keeps the stored pair; `"authenticated": false`
//!   drops it; a `username` and `password` given replace it.
//! - **Databases**: the view shows a URL with [`HIDDEN`] in place of its credentials
//!   (`postgres://***@db.test/crm`). A URL equal to what the view shows for that name keeps
//!   the stored URL; any other URL replaces it. A URL with [`HIDDEN`] standing for nothing
//!   stored is refused rather than stored with `***` as its password.
//!
//! The view's own fields (`tenant`, `set`, `smtp.authenticated`) are accepted back, so the
//! answer of `GET` can be `PUT` as it is.

use serde_json::{Map, Value as Json};

use crate::settings::{DatabaseUrl, SettingsError};

/// What a view shows in place of a credential.
pub const HIDDEN: &str = "***";

/// The document to store for the operator's `request`, given the `stored` one (none when
/// the tenant has no ceiling yet): the request with the hidden credentials it sent back put
/// back, and the view's own fields taken out. The result is still to be checked
/// ([`crate::settings::TenantSettings::from_ceiling_json`]); a request that is not an object
/// is returned as it is, for that check to refuse.
pub fn with_kept_credentials(
    tenant: &str,
    request: &Json,
    stored: Option<&Json>,
) -> Result<Json, SettingsError> {
    let Json::Object(request) = request else {
        return Ok(request.clone());
    };
    let mut doc = request.clone();
    match doc.remove("tenant") {
        None => {}
        Some(Json::String(named)) if named == tenant => {}
        Some(other) => {
            return Err(SettingsError::new(
                "tenant",
                format!("this is the ceiling of `{tenant}`, not of {other}"),
            ));
        }
    }
    match doc.remove("set") {
        None | Some(Json::Bool(_)) => {}
        Some(_) => return Err(SettingsError::new("set", "`set` is true or false")),
    }
    let stored = stored.and_then(Json::as_object);
    if let Some(Json::Object(smtp)) = doc.get_mut("smtp") {
        keep_smtp_credentials(smtp, stored.and_then(|s| s.get("smtp")))?;
    }
    if let Some(Json::Object(databases)) = doc.get_mut("databases") {
        keep_database_urls(databases, stored.and_then(|s| s.get("databases")))?;
    }
    Ok(Json::Object(doc))
}

fn keep_smtp_credentials(
    smtp: &mut Map<String, Json>,
    stored: Option<&Json>,
) -> Result<(), SettingsError> {
    let authenticated = match smtp.remove("authenticated") {
        None => None,
        Some(Json::Bool(b)) => Some(b),
        Some(_) => {
            return Err(SettingsError::new(
                "smtp.authenticated",
                "`authenticated` is true or false",
            ));
        }
    };
    let given = smtp.contains_key("username") || smtp.contains_key("password");
    let stored_pair = stored
        .and_then(|s| Some((s.get("username")?.clone(), s.get("password")?.clone())))
        .filter(|(u, p)| !u.is_null() && !p.is_null());
    match (authenticated, given) {
        (Some(false), true) => Err(SettingsError::new(
            "smtp.authenticated",
            "`authenticated` is false, yet a username or password is given: leave them out to drop the credentials",
        )),
        (Some(false), false) | (_, true) => Ok(()),
        (_, false) => match stored_pair {
            Some((username, password)) => {
                smtp.insert("username".into(), username);
                smtp.insert("password".into(), password);
                Ok(())
            }
            None if authenticated == Some(true) => Err(SettingsError::new(
                "smtp.authenticated",
                "no credentials are stored to keep: give `username` and `password`",
            )),
            None => Ok(()),
        },
    }
}

fn keep_database_urls(
    databases: &mut Map<String, Json>,
    stored: Option<&Json>,
) -> Result<(), SettingsError> {
    for (name, url) in databases.iter_mut() {
        let Json::String(sent) = url else { continue };
        let stored_url = stored
            .and_then(|s| s.get(name))
            .and_then(Json::as_str)
            .map(str::to_owned);
        let shown = stored_url
            .clone()
            .and_then(|s| DatabaseUrl::try_from(s).ok())
            .map(|u| u.redacted());
        if let (Some(stored_url), Some(shown)) = (stored_url, shown)
            && *sent == shown
        {
            *url = Json::String(stored_url);
        } else if stands_for_a_credential(sent) {
            return Err(SettingsError::new(
                format!("databases.{name}"),
                format!(
                    "`{HIDDEN}` stands for a stored credential, and `{name}` has none stored with this URL: give the URL with its credentials"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether a URL holds [`HIDDEN`] where a view puts it: as its user, or as a query password.
fn stands_for_a_credential(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    url.username() == HIDDEN
        || url
            .query_pairs()
            .any(|(k, v)| k.to_ascii_lowercase().contains("password") && v == HIDDEN)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::settings::TenantSettings;

    fn stored() -> Json {
        json!({
            "ceiling": { "email": true, "databases": ["crm", "ops"] },
            "smtp": { "host": "mail.test", "from": "a@b.example", "username": "u",
                      "password": "smtp-secret" },
            "databases": { "crm": "postgres://app:db-secret@db.test/crm",
                           "ops": "postgres://db.test/ops?sslmode=require&password=q-secret",
                           "local": "sqlite:/var/lib/x.db" },
        })
    }

    /// What the operator's `GET` shows of a stored document.
    fn view(doc: &Json) -> Json {
        let settings = TenantSettings::from_ceiling_json("acme", doc).unwrap();
        let mut view = settings.ceiling_view();
        view["tenant"] = json!("acme");
        view["set"] = json!(true);
        view
    }

    #[test]
    fn the_view_written_back_as_it_is_keeps_every_credential() {
        let stored = stored();
        let shown = view(&stored);
        let text = shown.to_string();
        for hidden in ["smtp-secret", "db-secret", "q-secret", "app:", "\"u\""] {
            assert!(!text.contains(hidden), "{hidden} shown: {text}");
        }
        assert_eq!(shown["databases"]["crm"], "postgres://***@db.test/crm");
        let kept = with_kept_credentials("acme", &shown, Some(&stored)).unwrap();
        let settings = TenantSettings::from_ceiling_json("acme", &kept).unwrap();
        let smtp = settings.smtp.unwrap();
        assert_eq!(smtp.username.as_deref(), Some("u"));
        assert_eq!(smtp.password.unwrap().expose(), "smtp-secret");
        assert_eq!(kept["databases"], stored["databases"]);
    }

    #[test]
    fn a_credential_given_replaces_and_one_taken_away_is_dropped() {
        let stored = stored();
        let mut sent = view(&stored);
        sent["smtp"]["username"] = json!("v");
        sent["smtp"]["password"] = json!("new-secret");
        sent["databases"]["crm"] = json!("postgres://app:new-db@db.test/crm");
        let kept = with_kept_credentials("acme", &sent, Some(&stored)).unwrap();
        assert_eq!(kept["smtp"]["password"], "new-secret");
        assert_eq!(
            kept["databases"]["crm"],
            "postgres://app:new-db@db.test/crm"
        );

        let mut sent = view(&stored);
        sent["smtp"]["authenticated"] = json!(false);
        sent["databases"]["crm"] = json!("postgres://db.test/crm");
        let kept = with_kept_credentials("acme", &sent, Some(&stored)).unwrap();
        assert!(kept["smtp"].get("password").is_none(), "{kept}");
        assert_eq!(kept["databases"]["crm"], "postgres://db.test/crm");
    }

    #[test]
    fn a_marker_that_stands_for_nothing_stored_is_refused() {
        let stored = stored();
        let mut sent = view(&stored);
        // Another host: the stored credentials were for db.test, not for this one.
        sent["databases"]["crm"] = json!("postgres://***@elsewhere.test/crm");
        let e = with_kept_credentials("acme", &sent, Some(&stored)).unwrap_err();
        assert_eq!(e.path, "databases.crm");
        let e = with_kept_credentials(
            "acme",
            &json!({ "smtp": { "host": "m", "from": "a@b.example", "authenticated": true } }),
            None,
        )
        .unwrap_err();
        assert_eq!(e.path, "smtp.authenticated");
        let e = with_kept_credentials("acme", &json!({ "tenant": "globex" }), Some(&stored))
            .unwrap_err();
        assert_eq!(e.path, "tenant");
    }
}
