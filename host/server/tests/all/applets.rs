//! Uploaded applets, with a real installer (the runtime: components validated, compiled
//! and described as `coda serve` does): upload, describe, list, retire; the streamed size
//! limit; refused components; immutable versions; another tenant's applets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use coda_applet_artifacts as artifacts;
use coda_flow::{Engine, FlowLimits, WallClock};
use coda_runtime::{LoadOptions, Runtime, RuntimeConfig};
use coda_server::{AppState, AppletInstaller, InspectedApplet, Refused, hash_token, router};
use coda_store::Store;
use coda_types::AppletInfo;
use http_body_util::BodyExt;
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use crate::{Harness, OPERATOR, Script, call, json_body, step_info, tenant, wait_info};

/// The runtime as the installer, as the `coda` binary's is.
struct RuntimeInstaller(Runtime);

#[async_trait]
impl AppletInstaller for RuntimeInstaller {
    async fn inspect(&self, bytes: &[u8], max_bytes: usize) -> Result<InspectedApplet, Refused> {
        let options = LoadOptions {
            max_bytes: max_bytes as u64,
            ..LoadOptions::default()
        };
        match self.0.load(bytes, &options).await {
            Ok(loaded) => Ok(InspectedApplet {
                info: loaded.info.clone(),
                coda_imports: loaded.coda_imports.clone(),
                digest: loaded.digest.clone(),
            }),
            Err(e) => Err(Refused {
                kind: e.kind(),
                message: e.to_string(),
                internal: false,
            }),
        }
    }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).unwrap()
}

/// A server taking uploads up to `limit` bytes, with `builtins` as its built-in applets.
fn harness_with(runtime: Runtime, builtins: Vec<AppletInfo>, limit: usize) -> Harness {
    harness_configured(runtime, builtins, limit, |state| state)
}

/// The same, with `configure` applied to the state (trusted vendor keys, say).
fn harness_configured(
    runtime: Runtime,
    builtins: Vec<AppletInfo>,
    limit: usize,
    configure: impl FnOnce(AppState) -> AppState,
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("coda.db")).unwrap());
    let engine = Arc::new(Engine::new(
        store,
        Arc::new(Script),
        Arc::new(WallClock),
        FlowLimits::default(),
    ));
    let state = AppState::new(engine.clone(), builtins, &hash_token(OPERATOR))
        .unwrap()
        .with_installer(Arc::new(RuntimeInstaller(runtime)))
        .with_upload_limit(limit)
        .with_secrets_key(coda_store::SecretsKey::generate().unwrap());
    let state = configure(state);
    Harness {
        _dir: dir,
        engine,
        app: router(state),
    }
}

pub(super) fn harness() -> Harness {
    harness_with(
        runtime(),
        vec![step_info(), wait_info()],
        coda_server::DEFAULT_UPLOAD_LIMIT,
    )
}

fn wasm(bytes: Vec<u8>) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/wasm", bytes))
}

async fn upload(h: &Harness, token: &str, bytes: Vec<u8>) -> (StatusCode, Json) {
    call(h, "POST", "/v1/applets", Some(token), wasm(bytes)).await
}

/// The same component with a custom section of `padding` bytes appended: other bytes, the
/// same describe.
fn with_custom_section(mut bytes: Vec<u8>, padding: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"coda-test";
    bytes.push(0); // the custom section's id
    leb128(1 + name.len() + padding, &mut bytes);
    leb128(name.len(), &mut bytes);
    bytes.extend_from_slice(name);
    bytes.extend(std::iter::repeat_n(b'x', padding));
    bytes
}

fn plan_using(name: &str, applet: &str) -> Vec<u8> {
    format!("name: {name}\ntype: unattended\nstart: a\nnodes:\n  a:\n    applet: {applet}\n")
        .into_bytes()
}

#[tokio::test]
async fn upload_describe_list_publish_and_retire() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let hello = artifacts::read(artifacts::HELLO);

    let (status, uploaded) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    assert_eq!(uploaded["name"], "hello");
    let version = uploaded["version"].as_str().unwrap().to_owned();
    let reference = format!("hello@{version}");
    assert_eq!(uploaded["exits"], json!(["greeted", "anonymous"]));
    assert_eq!(uploaded["coda_imports"], json!(["data", "log", "state"]));
    assert_eq!(uploaded["capabilities"], json!([]));
    assert_eq!(uploaded["needs_live_party"], false);
    assert_eq!(uploaded["config_schema"]["type"], "object");
    assert_eq!(uploaded["size"], hello.len());
    assert_eq!(uploaded["digest"].as_str().unwrap().len(), 64);
    assert_eq!(uploaded["retired"], false);
    assert_eq!(uploaded["origin"], "uploaded");

    // The same bytes again: nothing new, the same record.
    let (status, again) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, uploaded);

    // What an applet that needs capabilities asks for: its describe's and its imports.
    let (status, sms) = upload(&h, &acme, artifacts::read(artifacts::SMS)).await;
    assert_eq!(status, StatusCode::CREATED, "{sms}");
    assert_eq!(sms["capabilities"], json!(["http", "secrets"]));
    let imports = sms["coda_imports"].as_array().unwrap();
    assert!(imports.contains(&json!("http")), "{sms}");

    let path = format!("/v1/applets/hello/versions/{version}");
    let (status, described) = call(&h, "GET", &path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{described}");
    assert_eq!(described, uploaded);

    let (status, list) = call(&h, "GET", "/v1/applets", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let names: Vec<&str> = list["applets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "sms", "step", "wait"]);
    assert_eq!(list["applets"][0]["origins"], json!(["uploaded"]));
    assert_eq!(list["applets"][0]["versions"][0]["version"], version);
    assert_eq!(list["applets"][0]["versions"][0]["retired"], false);
    assert_eq!(list["applets"][2]["origins"], json!(["built-in"]));

    let (status, versions) = call(&h, "GET", "/v1/applets/hello", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
    let (status, builtin) = call(
        &h,
        "GET",
        "/v1/applets/step/versions/1.0.0",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{builtin}");
    assert_eq!(builtin["origin"], "built-in");

    // A plan may use it as soon as it is uploaded.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/plans/greet",
        Some(&acme),
        Some(("application/yaml", plan_using("greet", &reference))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Retired: described as retired, and no plan published from now on may use it.
    let (status, retired) = call(&h, "DELETE", &path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{retired}");
    assert_eq!(retired["retired"], true);
    let retired_at = retired["retired_at_ms"].clone();
    assert!(retired_at.is_i64(), "{retired}");
    let (status, again) = call(&h, "DELETE", &path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(
        again["retired_at_ms"], retired_at,
        "retiring twice keeps the first time"
    );
    let (_, described) = call(&h, "GET", &path, Some(&acme), None).await;
    assert_eq!(described["retired"], true);
    let (_, list) = call(&h, "GET", "/v1/applets", Some(&acme), None).await;
    assert_eq!(list["applets"][0]["versions"][0]["retired"], true);
    let (status, refused) = call(
        &h,
        "PUT",
        "/v1/plans/greet",
        Some(&acme),
        Some(("application/yaml", plan_using("greet", &reference))),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let problem = &refused["error"]["problems"][0];
    assert_eq!(problem["node"], "a", "{refused}");
    let message = problem["message"].as_str().unwrap();
    assert!(
        message.contains(&reference) && message.contains("retired"),
        "{refused}"
    );
    // The version published before is still there, and so is the applet's record.
    let (status, _) = call(&h, "GET", "/v1/plans/greet/versions/1", Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK);
    // A retired version stays retired: uploading it again does not bring it back.
    let (status, body) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "applet-retired");

    // Built-in applets cannot be retired.
    let (status, body) = call(
        &h,
        "DELETE",
        "/v1/applets/step/versions/1.0.0",
        Some(&acme),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "applet-built-in");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be retired"),
        "{body}"
    );
}

#[tokio::test]
async fn another_tenants_applet_is_not_found_as_one_that_does_not_exist() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let beta = tenant(&h, "beta").await;
    let (status, uploaded) = upload(&h, &acme, artifacts::read(artifacts::HELLO)).await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let version = uploaded["version"].as_str().unwrap();

    // Beta sees exactly what it would for a name nobody uploaded.
    for (method, path, missing) in [
        (
            "GET",
            "/v1/applets/hello".to_owned(),
            "/v1/applets/hellx".to_owned(),
        ),
        (
            "GET",
            format!("/v1/applets/hello/versions/{version}"),
            format!("/v1/applets/hellx/versions/{version}"),
        ),
        (
            "DELETE",
            format!("/v1/applets/hello/versions/{version}"),
            format!("/v1/applets/hellx/versions/{version}"),
        ),
    ] {
        let (status, body) = call(&h, method, &path, Some(&beta), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        let (_, nobody) = call(&h, method, &missing, Some(&beta), None).await;
        assert_eq!(
            body.to_string(),
            nobody.to_string().replace("hellx", "hello"),
            "{method} {path}"
        );
    }
    let (_, list) = call(&h, "GET", "/v1/applets", Some(&beta), None).await;
    assert!(
        !list.to_string().contains("hello"),
        "beta lists acme's applet: {list}"
    );
    // Nor can beta's plans use it.
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/plans/greet",
        Some(&beta),
        Some((
            "application/yaml",
            plan_using("greet", &format!("hello@{version}")),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no applet named \"hello\""),
        "{body}"
    );
    // Acme's retiring is acme's: beta may upload the same name and version for itself.
    let (status, body) = upload(&h, &beta, artifacts::read(artifacts::HELLO)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn versions_are_immutable_and_built_in_versions_are_taken() {
    let runtime = runtime();
    let hello = artifacts::read(artifacts::HELLO);
    let h = harness();
    let acme = tenant(&h, "acme").await;
    let (status, first) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = upload(&h, &acme, with_custom_section(hello.clone(), 16)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "applet-version-exists");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("hello@") && message.contains("immutable"),
        "{body}"
    );
    // The stored version is unchanged.
    let path = format!(
        "/v1/applets/hello/versions/{}",
        first["version"].as_str().unwrap()
    );
    let (_, described) = call(&h, "GET", &path, Some(&acme), None).await;
    assert_eq!(described["digest"], first["digest"]);

    // A server whose built-in applets include this name and version refuses it.
    let info = runtime
        .load(&hello, &LoadOptions::default())
        .await
        .unwrap()
        .info
        .clone();
    let h = harness_with(runtime, vec![info], coda_server::DEFAULT_UPLOAD_LIMIT);
    let acme = tenant(&h, "acme").await;
    let (status, body) = upload(&h, &acme, hello).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["kind"], "applet-built-in");
}

#[tokio::test]
async fn what_is_not_a_valid_component_is_refused_naming_why() {
    let h = harness();
    let acme = tenant(&h, "acme").await;
    // Each refused with the kind the CLI names for the same component (`coda applet
    // inspect`): an unknown import is `unknown-import` through the API too.
    let cases: [(&str, Vec<u8>, &str, &str); 5] = [
        (
            "garbage",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "invalid-component",
            "not a WebAssembly component",
        ),
        (
            "empty",
            Vec::new(),
            "invalid-component",
            "not a WebAssembly component",
        ),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "invalid-component",
            "core WebAssembly module",
        ),
        (
            "unknown import",
            artifacts::read(artifacts::UNKNOWN_IMPORT),
            "unknown-import",
            "does not provide",
        ),
        (
            // Instantiating it for its describe passes the memory limit.
            "describe fails",
            artifacts::read(artifacts::HUGE_MEMORY),
            "memory",
            "describe failed",
        ),
    ];
    for (what, bytes, kind, why) in cases {
        let expected_kind = runtime()
            .load(&bytes, &LoadOptions::default())
            .await
            .err()
            .map(|e| e.kind());
        assert_eq!(expected_kind, Some(kind), "{what}: the CLI's kind");
        let (status, body) = upload(&h, &acme, bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["error"]["kind"], kind, "{what}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{what}: {message}");
    }
    // Nothing was stored.
    let (_, list) = call(&h, "GET", "/v1/applets", Some(&acme), None).await;
    assert_eq!(list["applets"].as_array().unwrap().len(), 2, "{list}");

    // A server given no installer takes no uploads, and says so.
    let h = crate::harness();
    let acme = tenant(&h, "acme").await;
    let (status, body) = upload(&h, &acme, artifacts::read(artifacts::HELLO)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["kind"], "uploads-disabled");
}

#[tokio::test]
async fn an_oversized_upload_is_refused_while_it_streams() {
    const LIMIT: usize = 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let h = harness_with(runtime(), vec![step_info()], LIMIT);
    let acme = tenant(&h, "acme").await;

    // A body of 64 MiB with no Content-Length, counted as it is pulled: the server must
    // answer after reading a little more than the limit, not after reading it all.
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = std::iter::repeat_n(vec![0u8; CHUNK], 1024).map(move |chunk| {
        counter.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    let request = Request::builder()
        .method("POST")
        .uri("/v1/applets")
        .header(header::AUTHORIZATION, format!("Bearer {acme}"))
        .header(header::CONTENT_TYPE, "application/wasm")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Json =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["kind"], "body-too-large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&LIMIT.to_string()),
        "the message names the limit: {body}"
    );
    let pulled = pulled.load(Ordering::SeqCst);
    assert!(
        pulled <= LIMIT + CHUNK,
        "the server read {pulled} bytes of an upload limited to {LIMIT}"
    );

    // A Content-Length past the limit is refused before anything is read.
    let request = Request::builder()
        .method("POST")
        .uri("/v1/applets")
        .header(header::AUTHORIZATION, format!("Bearer {acme}"))
        .header(header::CONTENT_LENGTH, (LIMIT + 1).to_string())
        .body(Body::from_stream(futures_util::stream::iter(
            std::iter::once(Err::<Bytes, _>(std::io::Error::other("the body was read"))),
        )))
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The limit is the upload's, not the router's 1 MiB for JSON: a component of 2 MiB is
    // taken under a limit of exactly its size, and refused one byte under.
    let hello = with_custom_section(artifacts::read(artifacts::HELLO), 2 * 1024 * 1024);
    let h = harness_with(runtime(), vec![], hello.len());
    let acme = tenant(&h, "acme").await;
    let (status, body) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], hello.len());
    let h = harness_with(runtime(), vec![], hello.len() - 1);
    let acme = tenant(&h, "acme").await;
    let (status, body) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // The operator's ceiling sets a tenant's own cap, above the default or below it, and
    // for that tenant only.
    let beta = tenant(&h, "beta").await;
    let ceiling = |bytes: usize| json!({ "ceiling": { "upload_bytes": bytes } });
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/operator/tenants/acme/ceiling",
        Some(OPERATOR),
        json_body(ceiling(hello.len())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "raised by its ceiling: {body}");
    let (status, body) = upload(&h, &beta, hello.clone()).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "beta keeps the default: {body}"
    );
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/operator/tenants/beta/ceiling",
        Some(OPERATOR),
        json_body(ceiling(1024)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = upload(&h, &beta, artifacts::read(artifacts::HELLO)).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "lowered by its ceiling: {body}"
    );
    assert!(
        body["error"]["message"].to_string().contains("1024"),
        "{body}"
    );
}

// ---- signed vendor packages ----

/// A vendor's key, and a server trusting it for vendor `acme` (and nothing else).
fn trusting_acme(require_signed: bool) -> (coda_package::SecretKey, Harness) {
    let key = coda_package::SecretKey::generate().unwrap();
    let trusted = coda_package::TrustedKeys::new([coda_package::TrustedVendor {
        vendor: "acme".into(),
        key: key.public(),
    }])
    .unwrap();
    let h = harness_configured(
        runtime(),
        vec![step_info()],
        coda_server::DEFAULT_UPLOAD_LIMIT,
        |state| {
            state
                .with_trusted_vendors(trusted)
                .with_require_signed_packages(require_signed)
        },
    );
    (key, h)
}

/// What `component` describes: its name and version.
async fn named(component: &[u8]) -> (String, String) {
    let info = runtime()
        .load(component, &LoadOptions::default())
        .await
        .unwrap()
        .info
        .clone();
    (info.name, info.version)
}

/// A package of `component` by `vendor`, declaring `needs` (capability names).
async fn package(
    component: &[u8],
    vendor: &str,
    needs: &[&str],
    key: &coda_package::SecretKey,
) -> Vec<u8> {
    let (name, version) = named(component).await;
    let needs: Vec<String> = needs
        .iter()
        .map(|n| format!("  - {{name: {n}, why: the applet's work needs {n}}}\n"))
        .collect();
    let text = format!(
        "name: {name}\nversion: {version}\nvendor: {vendor}\ndescription: {name} from {vendor}\ncapabilities:\n{}",
        if needs.is_empty() {
            "  []\n".to_owned()
        } else {
            needs.concat()
        }
    );
    let source = coda_package::ManifestSource::parse(&text).unwrap();
    coda_package::Package::build(source, component, key).unwrap()
}

async fn push(h: &Harness, token: &str, bytes: Vec<u8>) -> (StatusCode, Json) {
    call(
        h,
        "POST",
        "/v1/applets",
        Some(token),
        Some((coda_package::CONTENT_TYPE, bytes)),
    )
    .await
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are in the package")
}

async fn uploaded_names(h: &Harness, token: &str) -> Vec<String> {
    let (_, list) = call(h, "GET", "/v1/applets", Some(token), None).await;
    list["applets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["origins"].to_string().contains("uploaded"))
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_signed_package_is_verified_installed_and_remembers_its_vendor() {
    let (key, h) = trusting_acme(false);
    let acme = tenant(&h, "acme").await;
    let sms = artifacts::read(artifacts::SMS);
    let (status, body) = push(
        &h,
        &acme,
        package(&sms, "acme", &["http", "secrets"], &key).await,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "sms");
    assert_eq!(body["vendor"], "acme");
    assert_eq!(body["package"]["signed_by"], key.public().to_string());
    let manifest = &body["package"]["manifest"];
    assert_eq!(manifest["vendor"], "acme");
    assert_eq!(manifest["capabilities"][1]["name"], "secrets");
    assert_eq!(
        manifest["capabilities"][1]["why"],
        "the applet's work needs secrets"
    );
    assert_eq!(manifest["component"]["sha256"], body["digest"]);
    // The component installed is the component alone, exactly as an upload stores it.
    assert_eq!(body["size"], sms.len());
    assert_eq!(body["capabilities"], json!(["http", "secrets"]));

    // Shown the same way afterwards.
    let path = format!(
        "/v1/applets/sms/versions/{}",
        body["version"].as_str().unwrap()
    );
    let (status, described) = call(&h, "GET", &path, Some(&acme), None).await;
    assert_eq!(status, StatusCode::OK, "{described}");
    assert_eq!(described, body);

    // A package is known by its bytes too, whatever the Content-Type said; a plan may use
    // what it installed.
    let hello = artifacts::read(artifacts::HELLO);
    let (status, body) = upload(&h, &acme, package(&hello, "acme", &[], &key).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["vendor"], "acme");
    let reference = format!("hello@{}", body["version"].as_str().unwrap());
    let (status, body) = call(
        &h,
        "PUT",
        "/v1/plans/greet",
        Some(&acme),
        Some(("application/yaml", plan_using("greet", &reference))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Unsigned uploads stay allowed unless the operator requires packages; they have no
    // vendor.
    let beta = tenant(&h, "beta").await;
    let (status, body) = upload(&h, &beta, hello.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["vendor"], Json::Null);
    assert_eq!(body["package"], Json::Null);

    // The same component pushed later inside a signed package is the same version, and now
    // known to come from its vendor; an unsigned upload afterwards does not take that away.
    let (status, body) = push(&h, &beta, package(&hello, "acme", &[], &key).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vendor"], "acme");
    assert_eq!(body["package"]["signed_by"], key.public().to_string());
    let (status, body) = upload(&h, &beta, hello).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["vendor"], "acme");
}

#[tokio::test]
async fn a_tampered_untrusted_or_undeclaring_package_is_refused_and_nothing_is_stored() {
    let (key, h) = trusting_acme(false);
    let acme = tenant(&h, "acme").await;
    let sms = artifacts::read(artifacts::SMS);
    let good = package(&sms, "acme", &["http", "secrets"], &key).await;

    // One byte of the component changed after signing.
    let mut tampered = good.clone();
    let at = find(&tampered, &sms[..64]) + sms.len() / 2;
    tampered[at] ^= 0x01;
    // The manifest changed after signing (the same length: the archive stays whole).
    let mut edited = good.clone();
    let at = find(&edited, b"sms from acme");
    edited[at..at + 13].copy_from_slice(b"SMS FROM ACME");
    let stranger = coda_package::SecretKey::generate().unwrap();
    // (what, package, status, kind, words its message must have)
    type Case = (&'static str, Vec<u8>, StatusCode, &'static str, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            "tampered component",
            tampered,
            StatusCode::UNPROCESSABLE_ENTITY,
            "package-tampered",
            vec!["changed after signing".into()],
        ),
        (
            "tampered manifest",
            edited,
            StatusCode::UNPROCESSABLE_ENTITY,
            "package-bad-signature",
            vec!["does not verify".into(), "`acme`".into()],
        ),
        (
            "unknown signer",
            package(&sms, "acme", &["http", "secrets"], &stranger).await,
            StatusCode::FORBIDDEN,
            "package-untrusted-signer",
            vec!["`acme`".into(), stranger.public().to_string()],
        ),
        (
            "trusted key, another vendor's name",
            package(&sms, "globex", &["http", "secrets"], &key).await,
            StatusCode::FORBIDDEN,
            "package-untrusted-signer",
            vec!["`globex`".into(), "trusted for vendor `acme` only".into()],
        ),
        (
            "undeclared capability import",
            package(&sms, "acme", &["http"], &key).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "package-undeclared-capability",
            vec!["imports secrets".into()],
        ),
        (
            "a name the component does not describe",
            {
                let source = coda_package::ManifestSource::parse(&format!(
                    "name: texter\nversion: {}\nvendor: acme\ndescription: x\ncapabilities: []",
                    named(&sms).await.1
                ))
                .unwrap();
                coda_package::Package::build(source, &sms, &key).unwrap()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "package-invalid",
            vec!["describes itself as `sms`".into()],
        ),
        (
            "not an archive",
            b"#!/bin/sh\n".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "package-invalid",
            vec!["not a package".into()],
        ),
    ];
    for (what, bytes, status, kind, words) in cases {
        let (got, body) = push(&h, &acme, bytes).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["kind"], kind, "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("the package is refused: "),
            "{what}: {message}"
        );
        for word in words {
            assert!(message.contains(&word), "{what}: `{word}` not in {message}");
        }
    }
    // Nothing of any of them was stored.
    assert!(uploaded_names(&h, &acme).await.is_empty());
    // The good one still installs.
    let (status, body) = push(&h, &acme, good).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_package_is_held_to_the_tenants_upload_limit_and_packages_can_be_required() {
    let (key, h) = trusting_acme(true);
    let acme = tenant(&h, "acme").await;
    let hello = artifacts::read(artifacts::HELLO);

    // Required: an unsigned component is refused, saying what to do instead.
    let (status, body) = upload(&h, &acme, hello.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["kind"], "package-required");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("coda applet package"),
        "{body}"
    );
    let packaged = package(&hello, "acme", &[], &key).await;
    let (status, body) = push(&h, &acme, packaged.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The limit is the component's: a package whose component passes it is refused, one
    // whose component is within it is taken, manifest and signature on top.
    let limited = |limit: usize| {
        let trusted = coda_package::TrustedKeys::new([coda_package::TrustedVendor {
            vendor: "acme".into(),
            key: key.public(),
        }])
        .unwrap();
        harness_configured(runtime(), vec![], limit, |s| {
            s.with_trusted_vendors(trusted)
        })
    };
    let h = limited(hello.len() - 1);
    let acme = tenant(&h, "acme").await;
    let (status, body) = push(&h, &acme, packaged.clone()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["kind"], "body-too-large");
    let h = limited(hello.len());
    let acme = tenant(&h, "acme").await;
    let (status, body) = push(&h, &acme, packaged).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
