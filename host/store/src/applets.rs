//! Tenants' uploaded applets: one row per tenant, name and version (immutable once
//! written), and the component's bytes in the database, once per digest.
//!
//! Every read takes the tenant: another tenant's applet is not found, even when both
//! uploaded the same bytes (the bytes are shared, the rows are not).

use crate::db::Conn;
use crate::db::{OptionalExtension, params};

use crate::{Result, Store};

/// An applet to store: what the upload's validation found, and the component itself.
#[derive(Debug, Clone)]
pub struct NewApplet {
    pub tenant: String,
    pub name: String,
    pub version: String,
    /// SHA-256 of `bytes`, hex.
    pub digest: String,
    /// What its `describe` answered (`coda_types::AppletInfo` as JSON).
    pub info: serde_json::Value,
    /// The coda interfaces the component imports.
    pub imports: Vec<String>,
    pub bytes: Vec<u8>,
    /// The vendor package it was installed from (vendor, key, signature, manifest), or
    /// `None` for an unsigned upload.
    pub package: Option<serde_json::Value>,
}

/// An uploaded applet as stored (without its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct AppletRecord {
    pub tenant: String,
    pub name: String,
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub info: serde_json::Value,
    pub imports: Vec<String>,
    pub uploaded_at_ms: i64,
    /// When the tenant retired this version: no new plan version may use it.
    pub retired_at_ms: Option<i64>,
    /// The vendor package it was installed from, if it was.
    pub package: Option<serde_json::Value>,
}

/// What [`Store::put_applet`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum PutApplet {
    /// Stored now.
    Created(AppletRecord),
    /// This version was stored before with the same bytes: nothing changed.
    Unchanged(AppletRecord),
    /// This version exists with other bytes (versions are immutable), or was retired: the
    /// stored one is left as it is.
    Conflict(AppletRecord),
}

const COLUMNS: &str =
    "tenant, name, version, digest, size, info, imports, uploaded_at, retired_at, package";

type Columns = (AppletRecord, String, String, Option<String>);

fn record(row: &crate::db::Row) -> crate::Result<Columns> {
    Ok((
        AppletRecord {
            tenant: row.get(0)?,
            name: row.get(1)?,
            version: row.get(2)?,
            digest: row.get(3)?,
            size: row.get(4)?,
            info: serde_json::Value::Null,
            imports: Vec::new(),
            uploaded_at_ms: row.get(7)?,
            retired_at_ms: row.get(8)?,
            package: None,
        },
        row.get(5)?,
        row.get(6)?,
        row.get(9)?,
    ))
}

fn parsed((mut record, info, imports, package): Columns) -> Result<AppletRecord> {
    record.info = serde_json::from_str(&info)?;
    record.imports = serde_json::from_str(&imports)?;
    record.package = package.map(|p| serde_json::from_str(&p)).transpose()?;
    Ok(record)
}

fn find(conn: &Conn<'_>, tenant: &str, name: &str, version: &str) -> Result<Option<AppletRecord>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM applets WHERE tenant = ?1 AND name = ?2 AND version = ?3"
        ))?
        .query_row(params![tenant, name, version], record)
        .optional()?;
    row.map(parsed).transpose()
}

impl Store {
    /// Stores an uploaded applet version, unless the tenant has that version already: a
    /// unique insert, never check-then-insert, so two uploads at once store one. The same
    /// bytes again are [`PutApplet::Unchanged`] (gaining the package record if they now come
    /// from a package and had none); other bytes, or a retired version, are a
    /// [`PutApplet::Conflict`] with the stored record.
    pub async fn put_applet(&self, new: NewApplet, now_ms: i64) -> Result<PutApplet> {
        let info = new.info.to_string();
        let imports = serde_json::to_string(&new.imports)?;
        let package = new.package.as_ref().map(|p| p.to_string());
        self.writer
            .write(move |tx| {
                let size = new.bytes.len() as u64;
                tx.prepare_cached(
                    "INSERT INTO applet_components (digest, bytes, size) VALUES (?1, ?2, ?3)
                     ON CONFLICT (digest) DO NOTHING",
                )?
                .execute(params![new.digest, new.bytes, size])?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT INTO applets (tenant, name, version, digest, size, info, imports,
                            uploaded_at, package)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (tenant, name, version) DO NOTHING",
                    )?
                    .execute(params![
                        new.tenant,
                        new.name,
                        new.version,
                        new.digest,
                        size,
                        info,
                        imports,
                        now_ms,
                        package
                    ])?;
                let mut stored =
                    find(tx, &new.tenant, &new.name, &new.version)?.ok_or_else(|| {
                        crate::StoreError::NotCommitted(
                            "the applet row vanished in its write".into(),
                        )
                    })?;
                Ok(if inserted == 1 {
                    PutApplet::Created(stored)
                } else if stored.digest == new.digest && stored.retired_at_ms.is_none() {
                    // The same bytes, now from a verified package, gain the provenance an
                    // unsigned upload lacked: the component is unchanged, only what is known
                    // of it grows. A version's first provenance is kept.
                    if stored.package.is_none() && new.package.is_some() {
                        tx.prepare_cached(
                            "UPDATE applets SET package = ?4
                             WHERE tenant = ?1 AND name = ?2 AND version = ?3 AND package IS NULL",
                        )?
                        .execute(params![
                            new.tenant,
                            new.name,
                            new.version,
                            package
                        ])?;
                        stored.package = new.package;
                    }
                    PutApplet::Unchanged(stored)
                } else {
                    PutApplet::Conflict(stored)
                })
            })
            .await
    }

    /// One of the tenant's applet versions, retired or not.
    pub fn tenant_applet(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<AppletRecord>> {
        self.read(|conn| find(conn, tenant, name, version))
    }

    /// Every version of every applet the tenant uploaded, retired ones included, by name and
    /// then upload order.
    pub fn tenant_applets(&self, tenant: &str) -> Result<Vec<AppletRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM applets WHERE tenant = ?1 ORDER BY name, uploaded_at, version"
            ))?;
            let rows = stmt.query_map(params![tenant], record)?;
            rows.map(|row| parsed(row?)).collect()
        })
    }

    /// The component bytes of one of the tenant's applet versions (retired ones too: the
    /// runs and plan versions that use it keep working) and their digest.
    pub fn applet_component(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT a.digest, c.bytes FROM applets a
                     JOIN applet_components c ON c.digest = a.digest
                     WHERE a.tenant = ?1 AND a.name = ?2 AND a.version = ?3",
            )?
            .query_row(params![tenant, name, version], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
    }

    /// Retires one of the tenant's applet versions: publishing a plan that uses it is
    /// refused from now on. Retiring twice keeps the first time. `None` when the tenant
    /// has no such version.
    pub async fn retire_applet(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        now_ms: i64,
    ) -> Result<Option<AppletRecord>> {
        let (tenant, name, version) = (tenant.to_owned(), name.to_owned(), version.to_owned());
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE applets SET retired_at = COALESCE(retired_at, ?4)
                     WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                )?
                .execute(params![tenant, name, version, now_ms])?;
                find(tx, &tenant, &name, &version)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewToken;

    fn applet(tenant: &str, version: &str, bytes: &[u8]) -> NewApplet {
        NewApplet {
            tenant: tenant.into(),
            name: "sms".into(),
            version: version.into(),
            digest: format!("digest-of-{}", String::from_utf8_lossy(bytes)),
            info: serde_json::json!({ "name": "sms", "version": version }),
            imports: vec!["data".into(), "http".into()],
            bytes: bytes.to_vec(),
            package: None,
        }
    }

    async fn store_with(tenants: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("coda.db")).unwrap();
        for (i, tenant) in tenants.iter().enumerate() {
            let token = NewToken {
                id: format!("tok_{i}"),
                hash: format!("hash_{i}"),
            };
            assert!(store.create_tenant(tenant, token, 1).await.unwrap());
        }
        (dir, store)
    }

    #[tokio::test]
    async fn versions_are_immutable_and_tenants_do_not_see_each_others() {
        let (_dir, store) = store_with(&["acme", "beta"]).await;
        let PutApplet::Created(first) = store
            .put_applet(applet("acme", "1.0.0", b"one"), 10)
            .await
            .unwrap()
        else {
            panic!("not created");
        };
        assert_eq!(first.size, 3);
        assert_eq!(first.imports, ["data", "http"]);
        assert!(matches!(
            store.put_applet(applet("acme", "1.0.0", b"one"), 11).await.unwrap(),
            PutApplet::Unchanged(r) if r.uploaded_at_ms == 10
        ));
        assert!(matches!(
            store.put_applet(applet("acme", "1.0.0", b"two"), 12).await.unwrap(),
            PutApplet::Conflict(r) if r.digest == "digest-of-one"
        ));
        // The same name, version and bytes for another tenant is that tenant's own.
        assert!(matches!(
            store
                .put_applet(applet("beta", "1.0.0", b"one"), 13)
                .await
                .unwrap(),
            PutApplet::Created(_)
        ));
        assert!(
            store
                .tenant_applet("beta", "sms", "2.0.0")
                .unwrap()
                .is_none()
        );
        store
            .put_applet(applet("acme", "2.0.0", b"two"), 14)
            .await
            .unwrap();
        let versions: Vec<_> = store
            .tenant_applets("acme")
            .unwrap()
            .into_iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, ["1.0.0", "2.0.0"]);
        assert_eq!(store.tenant_applets("beta").unwrap().len(), 1);
        assert!(store.tenant_applets("gamma").unwrap().is_empty());
        assert_eq!(
            store.applet_component("acme", "sms", "2.0.0").unwrap(),
            Some(("digest-of-two".into(), b"two".to_vec()))
        );
        assert_eq!(
            store.applet_component("beta", "sms", "2.0.0").unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn retiring_keeps_the_bytes_and_the_first_time() {
        let (_dir, store) = store_with(&["acme", "beta"]).await;
        store
            .put_applet(applet("acme", "1.0.0", b"one"), 10)
            .await
            .unwrap();
        assert_eq!(
            store
                .retire_applet("beta", "sms", "1.0.0", 20)
                .await
                .unwrap(),
            None
        );
        let retired = store
            .retire_applet("acme", "sms", "1.0.0", 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(retired.retired_at_ms, Some(20));
        let again = store
            .retire_applet("acme", "sms", "1.0.0", 30)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.retired_at_ms, Some(20));
        assert!(
            store
                .applet_component("acme", "sms", "1.0.0")
                .unwrap()
                .is_some()
        );
        // A retired version is not brought back by uploading it again.
        assert!(matches!(
            store.put_applet(applet("acme", "1.0.0", b"one"), 40).await.unwrap(),
            PutApplet::Conflict(r) if r.retired_at_ms == Some(20)
        ));
    }
}
