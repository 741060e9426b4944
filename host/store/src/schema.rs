//! The schema, as numbered migrations applied in order inside one transaction each.

use crate::Result;
use crate::db::{Conn, PgConn};

const MIGRATIONS: &[&str] = &[
    // 1: plans, runs, steps.
    "CREATE TABLE plans (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, name, version)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        plan TEXT NOT NULL,
        plan_version INTEGER NOT NULL,
        interaction TEXT,
        trigger_key TEXT,
        status TEXT NOT NULL,
        node TEXT,
        step_seq INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        data TEXT NOT NULL,
        state TEXT NOT NULL,
        due_at INTEGER,
        wait TEXT,
        route_depth INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (tenant, trigger_key)
    );
    CREATE INDEX runs_due ON runs (due_at) WHERE status IN ('ready', 'parked', 'waiting');
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id),
        seq INTEGER NOT NULL,
        plan TEXT NOT NULL,
        plan_version INTEGER NOT NULL,
        node TEXT NOT NULL,
        applet TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        result TEXT NOT NULL,
        note TEXT NOT NULL,
        fuel_used INTEGER NOT NULL,
        duration_us INTEGER NOT NULL,
        data_changes TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (run_id, seq)
    );",
    // 2: interactions, one JSON body each, changed only inside the writer.
    "CREATE TABLE interactions (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    );",
    // 3: the effect journal: each capability call's result, by run, step and call position.
    "CREATE TABLE effects (
        run_id TEXT NOT NULL REFERENCES runs (id),
        step_seq INTEGER NOT NULL,
        call_seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        digest TEXT NOT NULL,
        result TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (run_id, step_seq, call_seq)
    );",
    // 4: the service's tenants and API tokens. Tokens are kept only as the SHA-256 of the
    // token (hex): a copy of the database gives nobody a token that works. The operator's
    // token is one row, so a second start finds it and prints nothing.
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE operator_token (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );",
    // 5: tenants' uploaded applets. The component bytes live in the database, not in a
    // local file, so every node sharing the database can load every applet; they are kept
    // once per digest (two tenants uploading the same component share it) and never
    // deleted: a retired version still runs for the plan versions and runs that use it.
    "CREATE TABLE applet_components (
        digest TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE TABLE applets (
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES applet_components (digest),
        size INTEGER NOT NULL,
        info TEXT NOT NULL,
        imports TEXT NOT NULL,
        uploaded_at INTEGER NOT NULL,
        retired_at INTEGER,
        PRIMARY KEY (tenant, name, version)
    );",
    // 6: listing a tenant's runs (`GET /v1/runs`) by page, and by interaction, without a
    // scan of every tenant's runs. Neither column is ever updated, so a step commit pays
    // nothing for these; plan and status (updated by step commits) are filtered within the
    // tenant's index instead of getting indexes of their own.
    "CREATE INDEX runs_tenant ON runs (tenant, id);
    CREATE INDEX runs_interaction ON runs (tenant, interaction, id);",
    // 7: completed interactions and post-contact work. The audit trail of edits, one row
    // per field changed (who: the API token's id; before and after as JSON); each skill's
    // post-contact work (wrap-up or dispositions) as JSON; each agent's latest
    // unavailability (wrap-up or a disposition owed), written with the interaction.
    "CREATE TABLE interaction_audit (
        tenant TEXT NOT NULL,
        interaction TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at INTEGER NOT NULL,
        by TEXT NOT NULL,
        field TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        PRIMARY KEY (tenant, interaction, seq)
    );
    CREATE TABLE skill_post_contact (
        tenant TEXT NOT NULL,
        skill TEXT NOT NULL,
        config TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, skill)
    );
    CREATE TABLE agent_states (
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, agent)
    );",
    // 8: the fair scheduler's index (each tenant's due runs in due order, read without
    // touching the rows) and the usage windows' indexes (steps and effects by time).
    "CREATE INDEX runs_due_by_tenant ON runs (tenant, due_at, id)
        WHERE status IN ('ready', 'parked', 'waiting');
    CREATE INDEX steps_at ON steps (at);
    CREATE INDEX effects_at ON effects (at);",
    // 9: what the service lets each tenant's applets do: the operator's ceiling per tenant,
    // the tenant's grants per applet (`name` or `name@version`), its secrets sealed with the
    // operator's key (nonce and ciphertext only), and a generation per tenant bumped by every
    // change of these, which hosts caching a tenant's capabilities compare.
    "CREATE TABLE ceilings (
        tenant TEXT PRIMARY KEY REFERENCES tenants (id),
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE grants (
        tenant TEXT NOT NULL REFERENCES tenants (id),
        applet TEXT NOT NULL,
        body TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, applet)
    );
    CREATE TABLE secrets (
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    CREATE TABLE grant_generations (
        tenant TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
    );",
    // 10: leases, so that several nodes sharing the database share the runs (`leases.rs`).
    // A run is claimed by a node (`claim_owner`) until a time (`claim_until`, ms), and every
    // claim bumps `claim_seq`, the number a step's commit is fenced by. A commit releases
    // the claim (both set to NULL), so the partial index holds only the runs in flight: a
    // tenant's live claims (its concurrency across nodes) are counted by one range of it.
    "ALTER TABLE runs ADD COLUMN claim_owner TEXT;
    ALTER TABLE runs ADD COLUMN claim_until INTEGER;
    ALTER TABLE runs ADD COLUMN claim_seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX runs_claimed ON runs (tenant, claim_until) WHERE claim_owner IS NOT NULL;",
    // 11: what an applet step was given (its data sources and its node's state, JSON), so
    // that a step of a real run can be replayed offline as a test fixture
    // (`coda runs show ID --as-fixture`), and the lines its applet logged (JSON, at most the
    // log limit). NULL for steps the host took without an applet, and for no lines.
    "ALTER TABLE steps ADD COLUMN input TEXT;
    ALTER TABLE steps ADD COLUMN logs TEXT;",
    // 12: where an applet version came from when it was installed from a signed vendor
    // package: the vendor, the key that signed, the signature and the manifest exactly as
    // signed (JSON). NULL for a tenant's own unsigned upload.
    "ALTER TABLE applets ADD COLUMN package TEXT;",
    // 13: how often the run's current step has been claimed without a commit, so a step
    // that takes the host down (or fails in it) every time is parked rather than started
    // forever, across restarts: `claim_step` is the `step_seq` the count is for, so any
    // write that moves the run on (a commit, a retry, an event) starts the count afresh.
    "ALTER TABLE runs ADD COLUMN claim_step INTEGER;
    ALTER TABLE runs ADD COLUMN step_claims INTEGER NOT NULL DEFAULT 0;",
    // 14: each tenant's key-value store (`kv.rs`): a row per live key, its value (the
    // tagged JSON of a data-source value), its version, the bytes it counts (key and value)
    // and when it expires (ms; NULL: never), found for pruning by the partial index; and per
    // tenant the keys and bytes it holds, kept in the transaction of every write so that
    // the ceiling's limits are checked without counting the rows.
    "CREATE TABLE kv (
        tenant TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        expires_at INTEGER,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE kv_usage (
        tenant TEXT PRIMARY KEY,
        keys INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );",
    // 15: runs listed oldest or newest first (`GET /v1/runs?order=`) by creation time, a
    // page at a time by keyset: one index per filter the API offers, each ending in
    // (created_at, id), so that a filter, a time window and the page's start are one range
    // of one index read in either direction, never a scan and a sort. `created_at` never
    // changes and `plan` only on a route; `status` changes a few times in a run's life,
    // which is the price of finding the failed runs among 100,000 without reading them all.
    // The interaction index replaces migration 6's (its prefix serves the same lookups).
    "CREATE INDEX runs_created ON runs (tenant, created_at, id);
    CREATE INDEX runs_plan_created ON runs (tenant, plan, created_at, id);
    CREATE INDEX runs_status_created ON runs (tenant, status, created_at, id);
    CREATE INDEX runs_interaction_created ON runs (tenant, interaction, created_at, id);
    DROP INDEX runs_interaction;",
    // 16: interactions listed (`GET /v1/interactions`) like runs: what the list filters on
    // is kept in columns beside the body (written with it, `write_interaction`), and
    // `created_at` is the time of its first write. Existing rows take theirs from the body;
    // their first write's time was never kept, so their last one stands for it.
    "ALTER TABLE interactions ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE interactions ADD COLUMN status TEXT NOT NULL DEFAULT '';
    ALTER TABLE interactions ADD COLUMN channel TEXT NOT NULL DEFAULT '';
    ALTER TABLE interactions ADD COLUMN skill TEXT;
    UPDATE interactions SET created_at = updated_at,
        status = json_extract(body, '$.status'),
        channel = json_extract(body, '$.channel'),
        skill = json_extract(body, '$.skill');
    CREATE INDEX interactions_created ON interactions (tenant, created_at, id);
    CREATE INDEX interactions_status_created ON interactions (tenant, status, created_at, id);
    CREATE INDEX interactions_channel_created ON interactions (tenant, channel, created_at, id);
    CREATE INDEX interactions_skill_created ON interactions (tenant, skill, created_at, id);",
    // 17: the operator's lists: a tenant's tokens (`GET /v1/operator/tenants/{tenant}/tokens`,
    // newest first) and the live ones counted per tenant, without a scan of every token.
    "CREATE INDEX tokens_tenant ON tokens (tenant, created_at, id);",
    // 18: a step's input without a copy of the run's data at every step (`inputs.rs`):
    // `input` keeps the data in full at a run's first step only, and each step keeps how its
    // commit changed the data (`=`: exactly its `data_changes`; else JSON of what it set and
    // removed). NULL for steps journaled before.
    "ALTER TABLE steps ADD COLUMN data_delta TEXT;",
    // 19: how often the run's current step was started alone in its host (the engine's
    // suspects, `suspects.rs` in coda-flow): only such a start is a failure of that step's
    // own when the host dies, so only these count toward parking it. `solo_step` is the
    // `step_seq` the count is for, so any write that moves the run on starts it afresh.
    "ALTER TABLE runs ADD COLUMN solo_step INTEGER;
    ALTER TABLE runs ADD COLUMN solo_starts INTEGER NOT NULL DEFAULT 0;",
    // 20: events kept until something takes them (`events.rs`). A named event (a
    // disposition, a survey reply) is a row per interaction in arrival order (`seq`), kept
    // until `expires_at` whether or not a wait took it (`taken_by`, the JSON list of the runs
    // it woke, and `taken_at`); the partial index finds an interaction's oldest untaken
    // event of a name, and holds only untaken ones. An interaction event that came before
    // its interaction started (an `ended` before its `started`) is held as its JSON body,
    // once per body (`digest`), until the start applies it or it expires. Per tenant, the
    // untaken named events and the held events are counted in `event_counts` by every write
    // that adds or removes one, so the per-tenant bound is checked without counting rows.
    "CREATE TABLE named_events (
        tenant TEXT NOT NULL,
        interaction TEXT NOT NULL,
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        payload TEXT NOT NULL,
        data TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        taken_by TEXT,
        taken_at INTEGER,
        PRIMARY KEY (tenant, interaction, seq)
    );
    CREATE INDEX named_events_untaken ON named_events (tenant, interaction, name, seq)
        WHERE taken_at IS NULL;
    CREATE INDEX named_events_expiry ON named_events (expires_at);
    CREATE TABLE held_events (
        tenant TEXT NOT NULL,
        interaction TEXT NOT NULL,
        seq INTEGER NOT NULL,
        digest TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, interaction, seq),
        UNIQUE (tenant, interaction, digest)
    );
    CREATE INDEX held_events_expiry ON held_events (expires_at);
    CREATE TABLE event_counts (
        tenant TEXT PRIMARY KEY,
        untaken INTEGER NOT NULL,
        held INTEGER NOT NULL
    );",
    // 21: outbound webhooks (`webhooks.rs`): each tenant's subscriptions (the signing
    // secret sealed like the tenants' secrets, and the one replaced by the last rotation
    // with the end of its window); the deliveries, a projection of the journal, unique per
    // subscription, run and position (so projecting a run twice writes each once), claimed
    // by one node at a time like runs; how far each run's journal is projected; and how far
    // the scan of the journal by time has gone. A step's commit writes none of these.
    "CREATE TABLE webhook_subscriptions (
        tenant TEXT NOT NULL,
        id TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        plan TEXT,
        secret_nonce BLOB NOT NULL,
        secret BLOB NOT NULL,
        previous_nonce BLOB,
        previous BLOB,
        previous_until INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
    );
    CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        subscription TEXT NOT NULL,
        run_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        event_type TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_at INTEGER NOT NULL,
        next_at INTEGER,
        last_status INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        claim_owner TEXT,
        claim_until INTEGER,
        claim_seq INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (subscription, run_id, position)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_order ON webhook_deliveries (tenant, subscription, run_id, position)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_log ON webhook_deliveries (tenant, subscription, id);
    CREATE INDEX webhook_deliveries_claimed ON webhook_deliveries (tenant, claim_until)
        WHERE claim_owner IS NOT NULL;
    CREATE TABLE webhook_runs (
        run_id TEXT PRIMARY KEY,
        next_seq INTEGER NOT NULL
    );
    CREATE TABLE webhook_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at INTEGER NOT NULL
    );",
    // 22: tenants' intake connections (`intake.rs`): where a platform (Twilio, Amazon
    // Connect, Genesys Cloud, CloudEvents) delivers its events. `id` is the random public id
    // in the delivery URL, by which a delivery finds its tenant; `config` is the connection's
    // JSON as coda-intake checked it (the name of the secret, never its value).
    "CREATE TABLE intake_connections (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL REFERENCES tenants (id),
        name TEXT NOT NULL,
        config TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (tenant, name)
    );",
];

pub(crate) fn migrate_sqlite(conn: &mut rusqlite::Connection) -> Result<()> {
    // The version is read inside the write transaction, so two processes opening a new
    // file at once migrate it once: the second waits (busy timeout), then finds it done.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
    }
    // The file says it is a coda store, so a tenant database configured onto it is refused.
    let id: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if id != coda_types::STORE_APPLICATION_ID {
        tx.pragma_update(None, "application_id", coda_types::STORE_APPLICATION_ID)?;
    }
    tx.commit()?;
    Ok(())
}

/// The advisory lock held while a node migrates: any fixed number, the same on every node.
const MIGRATION_LOCK: i64 = 0x636f_6461; // "coda"

/// A migration's DDL in PostgreSQL's words: SQLite's `INTEGER` holds 64 bits, PostgreSQL's
/// 32, so `BIGINT`; `BLOB` is `BYTEA`; a field of a JSON body, SQLite's
/// `json_extract(body, '$.f')`, is `(CAST(body AS json) ->> 'f')` (both give SQL NULL for a
/// field missing or null). The rest of the schema is standard SQL.
pub(crate) fn postgres_ddl(sql: &str) -> String {
    sql.replace("INTEGER", "BIGINT")
        .replace("BLOB", "BYTEA")
        .replace("json_extract(body, '$.", "(CAST(body AS json) ->> '")
}

/// Brings a PostgreSQL database's schema up to date, holding an advisory lock so that nodes
/// starting together migrate once: the second waits, then finds nothing left to do. The
/// version is a row in `schema_version` (PostgreSQL has no `user_version`).
pub(crate) fn migrate_postgres(conn: &mut PgConn) -> Result<()> {
    conn.batch(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    let migrated = (|| -> Result<()> {
        conn.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
        let current: i64 = Conn::pg(conn).query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            &[],
            |r| r.get(0),
        )?;
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            conn.batch(&format!(
                "BEGIN; {}; DELETE FROM schema_version; INSERT INTO schema_version VALUES ({}); COMMIT",
                postgres_ddl(sql),
                index + 1
            ))
            .inspect_err(|_| {
                let _ = conn.batch("ROLLBACK");
            })?;
        }
        // Not a numbered migration: made from this version's statements each time a store
        // opens (its name carries their digest), PostgreSQL's only.
        conn.batch(&crate::journal::commit_function().1)?;
        Ok(())
    })();
    let unlocked = conn.batch(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"));
    migrated.and(unlocked)
}
