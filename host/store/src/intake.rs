//! Tenants' intake connections (migration 22): where a contact-center platform delivers
//! its events. A row per connection: its public id (random, in the delivery URL, so a
//! delivery finds its tenant without a token), its tenant and name, and its configuration
//! as the JSON `coda-intake` checked (the store does not read it).
//!
//! **Architecture Invariant:** a connection is found either by its tenant and name (the
//! tenant's API) or by its public id alone (a delivery); the id is made by the caller from
//! 32 random bytes and never changes, so no tenant's id can be guessed from another's.

use crate::db::{OptionalExtension, params};

use crate::{Result, Store};

/// A connection as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeConnection {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub config: serde_json::Value,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "id, tenant, name, config, created_at, updated_at";

fn from_row(r: &crate::db::Row) -> Result<IntakeConnection> {
    let config: String = r.get(3)?;
    Ok(IntakeConnection {
        id: r.get(0)?,
        tenant: r.get(1)?,
        name: r.get(2)?,
        config: serde_json::from_str(&config)?,
        created_at_ms: r.get(4)?,
        updated_at_ms: r.get(5)?,
    })
}

impl Store {
    /// Creates the tenant's connection `name`, or replaces its configuration keeping its id
    /// (`new_id` is used only for a new one, so a platform's URL stays valid). `None`: no
    /// such tenant.
    pub async fn put_intake_connection(
        &self,
        tenant: &str,
        name: &str,
        new_id: &str,
        config: &serde_json::Value,
        now_ms: i64,
    ) -> Result<Option<IntakeConnection>> {
        let (tenant, name, new_id) = (tenant.to_owned(), name.to_owned(), new_id.to_owned());
        let text = config.to_string();
        self.writer
            .write(move |tx| {
                let known = tx
                    .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
                    .query_row(params![tenant], |_| Ok(()))
                    .optional()?;
                if known.is_none() {
                    return Ok(None);
                }
                tx.prepare_cached(
                    "INSERT INTO intake_connections (id, tenant, name, config, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (tenant, name) DO UPDATE SET config = ?4, updated_at = ?5",
                )?
                .execute(params![new_id, tenant, name, text, now_ms])?;
                let row = tx
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM intake_connections WHERE tenant = ?1 AND name = ?2"
                    ))?
                    .query_row(params![tenant, name], from_row)?;
                Ok(Some(row))
            })
            .await
    }

    /// The tenant's connection `name`.
    pub fn intake_connection(&self, tenant: &str, name: &str) -> Result<Option<IntakeConnection>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM intake_connections WHERE tenant = ?1 AND name = ?2"
            ))?
            .query_row(params![tenant, name], from_row)
            .optional()
        })
    }

    /// The connection a delivery names by its public id, whoever's it is.
    pub fn intake_connection_by_id(&self, id: &str) -> Result<Option<IntakeConnection>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM intake_connections WHERE id = ?1"
            ))?
            .query_row(params![id], from_row)
            .optional()
        })
    }

    /// The tenant's connections, by name.
    pub fn intake_connections(&self, tenant: &str) -> Result<Vec<IntakeConnection>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM intake_connections WHERE tenant = ?1 ORDER BY name"
            ))?;
            let rows = stmt.query_map(params![tenant], from_row)?;
            rows.collect::<Result<Vec<_>>>()
        })
    }

    /// Removes the tenant's connection `name`; `false` when there was none. Its URL then
    /// answers 404.
    pub async fn delete_intake_connection(&self, tenant: &str, name: &str) -> Result<bool> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached(
                        "DELETE FROM intake_connections WHERE tenant = ?1 AND name = ?2",
                    )?
                    .execute(params![tenant, name])?;
                Ok(deleted > 0)
            })
            .await
    }
}
