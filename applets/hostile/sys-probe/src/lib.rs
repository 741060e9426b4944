//! Hostile: reports what the sandbox lets a wasip2 guest see (environment, arguments,
//! files, working directory, preopens, stdin, clocks) as data sources, and exits
//! `isolated` when it saw nothing of the host, else `exposed`.

use std::io::Read;

use coda_sdk::{Applet, Context, Failure, Info, Outcome};
use wasip2::clocks::{monotonic_clock, wall_clock};
use wasip2::filesystem::preopens;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Config {}

struct SysProbe;

impl Applet for SysProbe {
    type Config = Config;

    fn info() -> Info {
        Info::new("sys-probe", env!("CARGO_PKG_VERSION"))
            .description("Reports what the sandbox shows")
            .exits(["isolated", "exposed"])
    }

    fn run(cx: &mut Context, _config: Config) -> Result<Outcome, Failure> {
        let env_count = std::env::vars_os().count();
        let args_count = std::env::args_os().count();
        let root_dir = std::fs::read_dir("/").map(drop);
        let passwd = std::fs::read("/etc/passwd").map(drop);
        let cwd = std::env::current_dir();
        let preopens = preopens::get_directories().len();
        let mut stdin = Vec::new();
        let stdin_bytes = std::io::stdin().read_to_end(&mut stdin);
        let clock_resolution_ns = monotonic_clock::resolution();
        let wall_nanos = wall_clock::now().nanoseconds;

        let isolated = env_count == 0
            && args_count == 0
            && preopens == 0
            && root_dir.is_err()
            && passwd.is_err()
            && matches!(stdin_bytes, Ok(0));

        cx.set_data("env_count", &env_count)?;
        cx.set_data("args_count", &args_count)?;
        cx.set_data("root_dir", &ok_or_error(&root_dir))?;
        cx.set_data("passwd", &ok_or_error(&passwd))?;
        match cwd {
            Ok(path) => cx.set_data("cwd", &path.display().to_string())?,
            Err(e) => cx.set_data("cwd", &e.to_string())?,
        }
        cx.set_data("preopens", &preopens)?;
        match stdin_bytes {
            Ok(n) => cx.set_data("stdin_bytes", &n)?,
            Err(e) => cx.set_data("stdin_bytes", &e.to_string())?,
        }
        cx.set_data("clock_resolution_ns", &clock_resolution_ns)?;
        cx.set_data("wall_nanos", &wall_nanos)?;
        Ok(Outcome::exit(if isolated { "isolated" } else { "exposed" }))
    }
}

fn ok_or_error(result: &std::io::Result<()>) -> String {
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

coda_sdk::export_applet!(SysProbe);
