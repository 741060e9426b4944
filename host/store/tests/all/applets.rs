//! Uploaded applets' provenance (migration 12): a version installed from a signed vendor
//! package keeps its package record; an unsigned upload has none.

use coda_store::{NewApplet, PutApplet};
use serde_json::json;

use crate::{open, token};

fn applet(version: &str, package: Option<serde_json::Value>) -> NewApplet {
    NewApplet {
        tenant: "acme".into(),
        name: "sms".into(),
        version: version.into(),
        digest: format!("digest-{version}"),
        info: json!({ "name": "sms", "version": version }),
        imports: vec!["http".into()],
        bytes: version.as_bytes().to_vec(),
        package,
    }
}

async fn a_packaged_version_keeps_its_vendor_and_manifest() {
    let (_dir, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    let package = json!({
        "vendor": "twilio-tools",
        "key": "ed25519:AAAA",
        "signature": "c2ln",
        "manifest": "{\"name\": \"sms\"}\n",
    });
    let PutApplet::Created(signed) = store
        .put_applet(applet("1.0.0", Some(package.clone())), 10)
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(signed.package, Some(package.clone()));
    let PutApplet::Created(raw) = store.put_applet(applet("2.0.0", None), 11).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(raw.package, None);
    assert_eq!(
        store
            .tenant_applet("acme", "sms", "1.0.0")
            .unwrap()
            .unwrap()
            .package,
        Some(package)
    );
    let all = store.tenant_applets("acme").unwrap();
    assert_eq!(
        all.iter().map(|r| r.package.is_some()).collect::<Vec<_>>(),
        [true, false]
    );
}

on_every_backend!(a_packaged_version_keeps_its_vendor_and_manifest);
