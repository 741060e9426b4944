//! What the service lets each tenant's applets do: the operator's ceiling per tenant, the
//! tenant's grant per applet, and the tenant's secrets, encrypted at rest.
//!
//! Ceilings and grants are stored as the JSON the API validated; `coda-capabilities` reads
//! them back and makes every decision. Secrets are sealed with XChaCha20-Poly1305 under the
//! operator's [`SecretsKey`], a random nonce per write, and the tenant and name as associated
//! data: a ciphertext moved to another tenant or name does not open. Every write here bumps
//! the tenant's generation in the same transaction, so a host caching a tenant's
//! capabilities knows cheaply when to rebuild them.

use crate::db::{Conn, OptionalExtension, params};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::{Result, Store, StoreError};

const NONCE_BYTES: usize = 24;

/// The key secrets are sealed with: 32 bytes, from the operator's configuration
/// (`CODA_SECRETS_KEY`, the config file) or the data directory's `secrets.key`. Its Debug
/// prints nothing of it.
#[derive(Clone)]
pub struct SecretsKey([u8; 32]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

impl SecretsKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretsKey(bytes)
    }

    /// A key written as 64 hex digits or as base64 (standard or URL-safe, padded or not) of
    /// 32 bytes. The error never repeats the text: it may be a key with a typo.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        use base64::Engine as _;
        let text = text.trim();
        let mut bytes = [0u8; 32];
        if text.len() == 64 && hex::decode_to_slice(text, &mut bytes).is_ok() {
            return Ok(SecretsKey(bytes));
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(decoded) = engine.decode(text)
                && let Ok(array) = <[u8; 32]>::try_from(decoded.as_slice())
            {
                return Ok(SecretsKey(array));
            }
        }
        Err("a secrets key is 32 bytes written as 64 hex digits or in base64".into())
    }

    /// A new random key.
    pub fn generate() -> std::result::Result<Self, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a key: {e}"))?;
        Ok(SecretsKey(bytes))
    }

    /// The key as 64 hex digits, for writing it to its file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }

    /// The associated data: a ciphertext opens only under the tenant and name it was
    /// sealed for (neither can hold a NUL).
    fn aad(tenant: &str, name: &str) -> Vec<u8> {
        [tenant.as_bytes(), &[0], name.as_bytes()].concat()
    }

    pub(crate) fn seal(
        &self,
        tenant: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce)
            .map_err(|e| StoreError::Secret(format!("no randomness for a nonce: {e}")))?;
        let aad = Self::aad(tenant, name);
        let ciphertext = self
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Secret("sealing failed".into()))?;
        Ok((nonce.to_vec(), ciphertext))
    }

    pub(crate) fn open(
        &self,
        tenant: &str,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String> {
        let nonce = <[u8; NONCE_BYTES]>::try_from(nonce).map_err(|_| {
            StoreError::Secret(format!("secret '{name}' of tenant '{tenant}': bad nonce"))
        })?;
        let aad = Self::aad(tenant, name);
        let plaintext = self
            .cipher()
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                StoreError::Secret(format!(
                    "secret '{name}' of tenant '{tenant}' does not open with this key \
                     (another key, or the row was altered)"
                ))
            })?;
        String::from_utf8(plaintext).map_err(|_| {
            StoreError::Secret(format!("secret '{name}' of tenant '{tenant}' is not text"))
        })
    }
}

/// A tenant's grant for one applet (`name` or `name@version`), as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    pub applet: String,
    pub body: serde_json::Value,
    pub updated_at_ms: i64,
}

/// A secret's name and when it was last written; never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub updated_at_ms: i64,
}

/// What [`Store::put_secret`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretWrite {
    Created,
    Replaced,
    /// A new secret would pass the ceiling's cap: nothing was written.
    TooMany {
        max: u32,
    },
    /// No such tenant.
    UnknownTenant,
}

fn bump_generation(tx: &Conn<'_>, tenant: &str) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO grant_generations (tenant, generation) VALUES (?1, 1)
         ON CONFLICT (tenant) DO UPDATE SET generation = grant_generations.generation + 1",
    )?
    .execute(params![tenant])?;
    Ok(())
}

fn tenant_exists(tx: &Conn<'_>, tenant: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")?
        .query_row(params![tenant], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Store {
    /// How many times the tenant's ceiling, grants or secrets have changed: a host caching
    /// them rebuilds when this moves. 0 when never written.
    pub fn grants_generation(&self, tenant: &str) -> Result<u64> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT generation FROM grant_generations WHERE tenant = ?1")?
                .query_row(params![tenant], |r| r.get::<i64>(0))
                .optional()?
                .map(|g| g as u64)
                .unwrap_or(0))
        })
    }

    /// Sets (or replaces) the tenant's ceiling document; `false` when there is no such
    /// tenant.
    pub async fn set_ceiling(
        &self,
        tenant: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<bool> {
        let (tenant, body) = (tenant.to_owned(), body.to_string());
        self.writer
            .write(move |tx| {
                if !tenant_exists(tx, &tenant)? {
                    return Ok(false);
                }
                tx.prepare_cached(
                    "INSERT INTO ceilings (tenant, body, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant) DO UPDATE SET body = ?2, updated_at = ?3",
                )?
                .execute(params![tenant, body, now_ms])?;
                bump_generation(tx, &tenant)?;
                Ok(true)
            })
            .await
    }

    /// The tenant's ceiling document, if the operator set one.
    pub fn ceiling(&self, tenant: &str) -> Result<Option<serde_json::Value>> {
        self.read(|conn| {
            let body: Option<String> = conn
                .prepare_cached("SELECT body FROM ceilings WHERE tenant = ?1")?
                .query_row(params![tenant], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
    }

    /// Whether the tenant has a ceiling set; `None` when there is no such tenant.
    pub fn ceiling_state(&self, tenant: &str) -> Result<Option<bool>> {
        self.read(|conn| {
            if !tenant_exists(conn, tenant)? {
                return Ok(None);
            }
            Ok(Some(
                conn.prepare_cached("SELECT 1 FROM ceilings WHERE tenant = ?1")?
                    .query_row(params![tenant], |_| Ok(()))
                    .optional()?
                    .is_some(),
            ))
        })
    }

    /// Sets (or replaces) the tenant's grant for `applet` (`name` or `name@version`).
    pub async fn put_grant(
        &self,
        tenant: &str,
        applet: &str,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        let (tenant, applet, body) = (tenant.to_owned(), applet.to_owned(), body.to_string());
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO grants (tenant, applet, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, applet) DO UPDATE SET body = ?3, updated_at = ?4",
                )?
                .execute(params![tenant, applet, body, now_ms])?;
                bump_generation(tx, &tenant)?;
                Ok(())
            })
            .await
    }

    /// The tenant's grants, by applet key.
    pub fn grants(&self, tenant: &str) -> Result<Vec<GrantRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT applet, body, updated_at FROM grants WHERE tenant = ?1 ORDER BY applet",
            )?;
            let rows = stmt.query_map(params![tenant], |r| {
                Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?))
            })?;
            rows.map(|row| {
                let (applet, body, updated_at_ms) = row?;
                Ok(GrantRecord {
                    applet,
                    body: serde_json::from_str(&body)?,
                    updated_at_ms,
                })
            })
            .collect()
        })
    }

    /// Removes the tenant's grant for `applet`; `false` when there was none.
    pub async fn delete_grant(&self, tenant: &str, applet: &str) -> Result<bool> {
        let (tenant, applet) = (tenant.to_owned(), applet.to_owned());
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM grants WHERE tenant = ?1 AND applet = ?2")?
                    .execute(params![tenant, applet])?;
                if deleted > 0 {
                    bump_generation(tx, &tenant)?;
                }
                Ok(deleted > 0)
            })
            .await
    }

    /// Seals `value` under `key` and stores it as the tenant's secret `name`. A new secret
    /// is refused when the tenant has `max` already; the count and the insert are one
    /// transaction, so two writes at once cannot both pass the cap.
    pub async fn put_secret(
        &self,
        tenant: &str,
        name: &str,
        value: &str,
        key: &SecretsKey,
        max: u32,
        now_ms: i64,
    ) -> Result<SecretWrite> {
        let (nonce, ciphertext) = key.seal(tenant, name, value.as_bytes())?;
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.writer
            .write(move |tx| {
                if !tenant_exists(tx, &tenant)? {
                    return Ok(SecretWrite::UnknownTenant);
                }
                let exists = tx
                    .prepare_cached("SELECT 1 FROM secrets WHERE tenant = ?1 AND name = ?2")?
                    .query_row(params![tenant, name], |_| Ok(()))
                    .optional()?
                    .is_some();
                if !exists {
                    let count: i64 = tx
                        .prepare_cached("SELECT COUNT(*) FROM secrets WHERE tenant = ?1")?
                        .query_row(params![tenant], |r| r.get(0))?;
                    if count >= i64::from(max) {
                        return Ok(SecretWrite::TooMany { max });
                    }
                }
                tx.prepare_cached(
                    "INSERT INTO secrets (tenant, name, nonce, ciphertext, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (tenant, name) DO UPDATE
                     SET nonce = ?3, ciphertext = ?4, updated_at = ?5",
                )?
                .execute(params![tenant, name, nonce, ciphertext, now_ms])?;
                bump_generation(tx, &tenant)?;
                Ok(if exists {
                    SecretWrite::Replaced
                } else {
                    SecretWrite::Created
                })
            })
            .await
    }

    /// The names of the tenant's secrets and when each was written; never a value.
    pub fn secret_names(&self, tenant: &str) -> Result<Vec<SecretInfo>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, updated_at FROM secrets WHERE tenant = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map(params![tenant], |r| {
                Ok(SecretInfo {
                    name: r.get(0)?,
                    updated_at_ms: r.get(1)?,
                })
            })?;
            rows.collect::<crate::Result<Vec<_>>>()
        })
    }

    /// Removes the tenant's secret `name`; `false` when there was none.
    pub async fn delete_secret(&self, tenant: &str, name: &str) -> Result<bool> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.writer
            .write(move |tx| {
                let deleted = tx
                    .prepare_cached("DELETE FROM secrets WHERE tenant = ?1 AND name = ?2")?
                    .execute(params![tenant, name])?;
                if deleted > 0 {
                    bump_generation(tx, &tenant)?;
                }
                Ok(deleted > 0)
            })
            .await
    }

    /// The tenant's secrets, opened with `key`: for building its capabilities, never for an
    /// answer of the API.
    pub fn secret_values(&self, tenant: &str, key: &SecretsKey) -> Result<Vec<(String, String)>> {
        let sealed = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, nonce, ciphertext FROM secrets WHERE tenant = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map(params![tenant], |r| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<Vec<u8>>(1)?,
                    r.get::<Vec<u8>>(2)?,
                ))
            })?;
            rows.collect::<crate::Result<Vec<_>>>()
        })?;
        sealed
            .into_iter()
            .map(|(name, nonce, ciphertext)| {
                let value = key.open(tenant, &name, &nonce, &ciphertext)?;
                Ok((name, value))
            })
            .collect()
    }

    /// The tenant's secret `name`, opened with `key`; none when it is not stored. For what
    /// the host itself authenticates with (an intake connection's token or header value),
    /// never for an answer of the API.
    pub fn secret_value(
        &self,
        tenant: &str,
        name: &str,
        key: &SecretsKey,
    ) -> Result<Option<String>> {
        let sealed = self.read(|conn| {
            conn.prepare_cached(
                "SELECT nonce, ciphertext FROM secrets WHERE tenant = ?1 AND name = ?2",
            )?
            .query_row(params![tenant, name], |r| {
                Ok((r.get::<Vec<u8>>(0)?, r.get::<Vec<u8>>(1)?))
            })
            .optional()
        })?;
        sealed
            .map(|(nonce, ciphertext)| key.open(tenant, name, &nonce, &ciphertext))
            .transpose()
    }

    /// Makes sure `tenant` exists (without a token: the operator makes those through the
    /// API), for seeding ceilings and grants from an operator's file at start.
    pub async fn ensure_tenant(&self, tenant: &str, now_ms: i64) -> Result<()> {
        let tenant = tenant.to_owned();
        self.writer
            .write(move |tx| {
                tx.prepare_cached(
                    "INSERT INTO tenants (id, created_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![tenant, now_ms])?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_and_base64_and_never_print() {
        let hex_key = "00".repeat(31) + "01";
        let k = SecretsKey::parse(&hex_key).unwrap();
        assert_eq!(k.to_hex(), hex_key);
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=";
        assert_eq!(SecretsKey::parse(b64).unwrap().to_hex(), hex_key);
        assert_eq!(
            SecretsKey::parse(b64.trim_end_matches('='))
                .unwrap()
                .to_hex(),
            hex_key
        );
        assert!(SecretsKey::parse("short").is_err());
        assert!(SecretsKey::parse(&"00".repeat(31)).is_err());
        assert!(!format!("{k:?}").contains("01"));
    }

    #[test]
    fn a_sealed_secret_opens_only_under_its_tenant_name_and_key() {
        let key = SecretsKey::generate().unwrap();
        let (nonce, ct) = key.seal("acme", "token", b"hunter2").unwrap();
        assert_eq!(key.open("acme", "token", &nonce, &ct).unwrap(), "hunter2");
        assert!(key.open("globex", "token", &nonce, &ct).is_err());
        assert!(key.open("acme", "other", &nonce, &ct).is_err());
        let other = SecretsKey::generate().unwrap();
        assert!(other.open("acme", "token", &nonce, &ct).is_err());
        // A fresh nonce each time: the same value seals differently.
        let (nonce2, ct2) = key.seal("acme", "token", b"hunter2").unwrap();
        assert_ne!((nonce, ct), (nonce2, ct2));
    }
}
