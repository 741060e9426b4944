//! Uploaded applets' provenance (migration 12): a version installed from a signed vendor
//! package keeps its package record; an unsigned upload has none.

use coda_store::{NewApplet, PutApplet};
use serde_json::json;

use crate::{Db, open, token};

/// A store with one tenant, `acme`.
async fn with_acme() -> (Db, coda_store::Store) {
    let (db, store) = open();
    store
        .create_tenant("acme", token("t1", "h1"), 1)
        .await
        .unwrap();
    (db, store)
}

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
    let (_db, store) = with_acme().await;
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

async fn the_same_bytes_from_a_package_add_provenance_once() {
    let (_db, store) = with_acme().await;
    let signed_by = |vendor: &str| json!({"vendor": vendor, "key": "ed25519:AAAA", "signature": "c2ln", "manifest": "{}\n"});
    let PutApplet::Created(raw) = store.put_applet(applet("1.0.0", None), 10).await.unwrap() else {
        panic!("not created")
    };
    assert_eq!(raw.package, None);

    // The same bytes, now from a package: unchanged, and known to come from its vendor.
    let put = store
        .put_applet(applet("1.0.0", Some(signed_by("twilio-tools"))), 11)
        .await
        .unwrap();
    let PutApplet::Unchanged(upgraded) = put else {
        panic!("not unchanged: {put:?}")
    };
    assert_eq!(upgraded.package, Some(signed_by("twilio-tools")));
    assert_eq!(upgraded.uploaded_at_ms, raw.uploaded_at_ms);

    // Its first provenance stays: neither another package nor a raw upload replaces it.
    for again in [Some(signed_by("someone-else")), None] {
        let PutApplet::Unchanged(kept) =
            store.put_applet(applet("1.0.0", again), 12).await.unwrap()
        else {
            panic!("not unchanged")
        };
        assert_eq!(kept.package, Some(signed_by("twilio-tools")));
    }

    // Other bytes under the same version are still a conflict, and change nothing.
    let mut other = applet("1.0.0", Some(signed_by("twilio-tools")));
    other.digest = "digest-other".into();
    let put = store.put_applet(other, 13).await.unwrap();
    assert!(
        matches!(&put, PutApplet::Conflict(r) if r.digest == "digest-1.0.0"),
        "{put:?}"
    );
    let stored = store
        .tenant_applet("acme", "sms", "1.0.0")
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.digest.as_str(), stored.package),
        ("digest-1.0.0", Some(signed_by("twilio-tools")))
    );
}

on_every_backend!(the_same_bytes_from_a_package_add_provenance_once);
