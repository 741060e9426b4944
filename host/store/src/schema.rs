//! The schema, as numbered migrations applied in order inside one transaction each.

use rusqlite::Connection;

use crate::Result;

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
    // 6: what the service lets each tenant's applets do: the operator's ceiling per tenant,
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
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
