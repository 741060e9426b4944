//! Signed vendor packages, as a vendor and an operator and a tenant live them: the vendor
//! makes a key (`coda applet keygen`), writes a manifest and packages its component
//! (`coda applet package`), checks it offline (`coda applet verify`); the operator trusts
//! the key in `coda serve`'s config and requires packages; the tenant pushes it, sees its
//! vendor and needs (`coda applet show`), and a plan using it runs. A package signed by a
//! key nobody trusted, and an unsigned component, are refused.

use std::path::Path;
use std::process::Command;

use coda_applet_artifacts as artifacts;
use serde_json::{Value, json};

use crate::serve::{OPERATOR, Server, start_with};
use crate::uploads::{after, interaction_runs, live};
use crate::{cache_dir, coda, coda_bin};

/// `coda ARGS` as the tenant of `token` runs it against `server`: (status, stdout, stderr).
fn tenant(server: &Server, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(coda_bin())
        .args(args)
        .env("CODA_CACHE_DIR", cache_dir())
        .env("CODA_SERVER", format!("http://{}", server.address))
        .env("CODA_TOKEN", token)
        .output()
        .expect("running coda");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_owned()
}

#[test]
fn a_vendor_package_is_signed_trusted_pushed_shown_and_run_and_a_strangers_is_refused() {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path();

    // The vendor's key; a stranger's too.
    let (status, made) = coda(&["applet", "keygen", "--out", &path(dir, "acme.key")]);
    assert_eq!(status, 0, "{made}");
    let public = made["public_key"].as_str().unwrap().to_owned();
    assert!(public.starts_with("ed25519:"), "{made}");
    assert_eq!(
        std::fs::read_to_string(dir.join("acme.key.pub"))
            .unwrap()
            .trim(),
        public
    );
    let (status, again) = coda(&["applet", "keygen", "--out", &path(dir, "acme.key")]);
    assert_eq!(status, 2, "a key is never overwritten: {again}");
    let (status, stranger) = coda(&["applet", "keygen", "--out", &path(dir, "stranger.key")]);
    assert_eq!(status, 0, "{stranger}");

    // The manifest, then the package, named NAME-VERSION.codapkg in --out's place.
    let (_, described) = coda(&["applet", "describe", artifacts::HELLO]);
    let version = described["version"].as_str().unwrap().to_owned();
    let manifest = path(dir, "manifest.yaml");
    std::fs::write(
        &manifest,
        format!(
            "name: hello\nversion: {version}\nvendor: acme\n\
             description: Greets the customer by name\ncapabilities: []\n"
        ),
    )
    .unwrap();
    let package = path(dir, &format!("hello-{version}.codapkg"));
    let (status, packaged) = coda(&[
        "applet",
        "package",
        artifacts::HELLO,
        "--manifest",
        &manifest,
        "--key",
        &path(dir, "acme.key"),
        "--out",
        &package,
    ]);
    assert_eq!(status, 0, "{packaged}");
    assert_eq!(packaged["vendor"], "acme");
    assert_eq!(packaged["signed_by"], public.as_str());
    assert_eq!(packaged["component"]["sha256"], described["digest"]);
    let strangers = path(dir, "strangers.codapkg");
    let (status, body) = coda(&[
        "applet",
        "package",
        artifacts::HELLO,
        "--manifest",
        &manifest,
        "--key",
        &path(dir, "stranger.key"),
        "--out",
        &strangers,
    ]);
    assert_eq!(status, 0, "{body}");

    // A manifest that does not cover the sms applet's imports is refused at packaging.
    let (_, sms) = coda(&["applet", "describe", artifacts::SMS]);
    let sms_manifest = path(dir, "sms.yaml");
    std::fs::write(
        &sms_manifest,
        format!(
            "name: sms\nversion: {}\nvendor: acme\ndescription: Texts the caller\n\
             capabilities:\n  - {{name: http, why: posts the message to the gateway}}\n",
            sms["version"].as_str().unwrap()
        ),
    )
    .unwrap();
    let (status, body) = coda(&[
        "applet",
        "package",
        artifacts::SMS,
        "--manifest",
        &sms_manifest,
        "--key",
        &path(dir, "acme.key"),
    ]);
    assert_eq!(status, 2, "{body}");
    assert_eq!(body["error"]["kind"], "package-undeclared-capability");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("secrets"),
        "{body}"
    );

    // The operator's config trusts acme's key and takes packages only.
    let config = path(dir, "serve.yaml");
    std::fs::write(
        &config,
        format!(
            "trusted_vendors:\n  - vendor: acme\n    key: \"{public}\"\nrequire_signed_packages: true\n"
        ),
    )
    .unwrap();
    // Checked offline against the same file first.
    let (status, verified) = coda(&["applet", "verify", &package, "--trusted", &config]);
    assert_eq!(status, 0, "{verified}");
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["vendor"], "acme");
    let (status, refused) = coda(&["applet", "verify", &strangers, "--trusted", &config]);
    assert_eq!(status, 2, "{refused}");
    assert_eq!(refused["error"]["kind"], "package-untrusted-signer");

    let data = tempfile::tempdir().unwrap();
    let server = start_with(data.path(), Some(OPERATOR), &["--config", &config]);
    let token = server.create_tenant("acme");

    let (status, stdout, stderr) = tenant(&server, &token, &["applet", "push", &package, "--json"]);
    assert_eq!(status, 0, "{stdout}{stderr}");
    let pushed = json_of(&stdout);
    assert_eq!(pushed["vendor"], "acme", "{pushed}");
    assert_eq!(pushed["digest"], described["digest"], "{pushed}");

    let (status, stdout, _) = tenant(
        &server,
        &token,
        &["applet", "show", "hello", &version, "--json"],
    );
    assert_eq!(status, 0, "{stdout}");
    let shown = json_of(&stdout);
    assert_eq!(shown["vendor"], "acme");
    assert_eq!(shown["package"]["signed_by"], public.as_str());
    assert_eq!(
        shown["package"]["manifest"]["description"],
        "Greets the customer by name"
    );
    let (status, stdout, _) = tenant(&server, &token, &["applet", "show", "hello", &version]);
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("signed by acme ({public})")),
        "{stdout}"
    );

    // Refused: a stranger's package, and an unsigned component; neither is stored.
    let (status, stdout, _) = tenant(&server, &token, &["applet", "push", &strangers, "--json"]);
    assert_eq!(status, 1, "{stdout}");
    let body = json_of(&stdout);
    assert_eq!(body["error"]["kind"], "package-untrusted-signer", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    let stranger_key = stranger["public_key"].as_str().unwrap();
    assert!(
        message.contains("`acme`") && message.contains(stranger_key),
        "the refusal names the vendor and the key: {message}"
    );
    let (status, _, stderr) = tenant(&server, &token, &["applet", "push", artifacts::SMS]);
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.contains("package-required"), "{stderr}");
    let (_, applets) = server.call("GET", "/v1/applets", Some(&token), None);
    let uploaded: Vec<&str> = applets["applets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["origins"] == json!(["uploaded"]))
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(uploaded, ["hello"], "{applets}");

    // A plan using it runs.
    let reference = format!("hello@{version}");
    for (name, plan) in [("after.yaml", after(&reference)), ("live.json", live())] {
        let file = path(dir, name);
        std::fs::write(&file, plan).unwrap();
        let (status, stdout, stderr) = tenant(&server, &token, &["plan", "push", &file]);
        assert_eq!(status, 0, "{stdout}{stderr}");
    }
    let run = interaction_runs(&server, &token, "call-1");
    assert_eq!(run["status"], "done", "{run}");
    assert_eq!(run["data"]["Greeting"], "Welcome, Ada!", "{run}");
    assert_eq!(run["journal"][0]["applet"], reference.as_str(), "{run}");
    server.stop();
}
