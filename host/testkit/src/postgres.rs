//! A PostgreSQL cluster of a test's own, from the machine's PostgreSQL binaries (Debian's
//! `postgresql` package: `/usr/lib/postgresql/N/bin`), on a free loopback port, in a
//! directory the test owns. Unlike the suite's shared server (`CODA_TEST_POSTGRES`), a test
//! can stop this one and start it again, to see what coda does while its database is gone.
//! Stopped (immediately) and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

pub struct PostgresCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// As root, the cluster belongs to the `postgres` user (initdb refuses root).
    run_as_postgres: bool,
    running: bool,
}

/// The newest `/usr/lib/postgresql/*/bin`, if PostgreSQL is installed.
pub fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PostgresCluster {
    /// Creates a cluster under `dir` (made if missing; it must be empty) and starts it.
    /// Authentication is `trust` on loopback; the superuser is `coda`.
    pub fn start(dir: &Path) -> anyhow::Result<PostgresCluster> {
        let bin = postgres_bin().context(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl): `./dev test` installs Debian's postgresql package",
        )?;
        std::fs::create_dir_all(dir)?;
        let run_as_postgres = is_root();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let cluster = PostgresCluster {
            bin,
            dir: dir.to_owned(),
            port,
            run_as_postgres,
            running: false,
        };
        if run_as_postgres {
            let chown = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir)
                .output()?;
            check("chown", &chown)?;
        }
        let data = cluster.data();
        let initdb = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "coda", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()?;
        check("initdb", &initdb)?;
        let mut cluster = cluster;
        cluster.start_again()?;
        Ok(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Starts the stopped cluster again, on the same port; returns once it accepts
    /// connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "start"])
            .output()?;
        check("pg_ctl start", &out)?;
        self.running = true;
        Ok(())
    }

    /// Stops the cluster at once (`-m immediate`: connections are cut, as when the
    /// database's machine goes away).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()?;
        check("pg_ctl stop", &out)?;
        self.running = false;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://coda@127.0.0.1:PORT/DATABASE`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://coda@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a database (with `createdb`, so the test needs no client library).
    pub fn create_database(&self, name: &str) -> anyhow::Result<String> {
        let out = self
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "coda",
            ])
            .arg(name)
            .output()?;
        check("createdb", &out)?;
        Ok(self.url(name))
    }
}

fn check(what: &str, out: &Output) -> anyhow::Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
