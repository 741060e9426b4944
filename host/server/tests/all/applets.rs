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
                kind: e.kind().into(),
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
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "garbage",
            b"#!/bin/sh\necho hi\n".to_vec(),
            "not a WebAssembly component",
        ),
        ("empty", Vec::new(), "not a WebAssembly component"),
        (
            "core module",
            b"\0asm\x01\0\0\0".to_vec(),
            "core WebAssembly module",
        ),
        (
            "unknown import",
            artifacts::read(artifacts::UNKNOWN_IMPORT),
            "does not provide",
        ),
        (
            // Instantiating it for its describe passes the memory limit.
            "describe fails",
            artifacts::read(artifacts::HUGE_MEMORY),
            "describe failed",
        ),
    ];
    for (what, bytes, why) in cases {
        let (status, body) = upload(&h, &acme, bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
        assert_eq!(body["error"]["kind"], "invalid-component", "{what}");
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
