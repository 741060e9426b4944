//! The package's round trip and each way it is refused.

use coda_types::Capability;

use crate::*;

/// Not a real component: the crate never parses one (the host's runtime does).
fn component() -> Vec<u8> {
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend((0..4000u32).map(|i| (i % 251) as u8));
    bytes
}

fn source() -> ManifestSource {
    ManifestSource::parse(
        "name: sms
version: 1.2.0
vendor: acme
description: Texts the caller through Twilio
capabilities:
  - name: http
    why: posts the message to Twilio's Messages API
  - name: secrets
    why: reads the account SID and auth token
",
    )
    .unwrap()
}

fn trusting(vendor: &str, key: &SecretKey) -> TrustedKeys {
    TrustedKeys::new([TrustedVendor {
        vendor: vendor.into(),
        key: key.public(),
    }])
    .unwrap()
}

/// The package's entries, in order, as (name, bytes).
fn entries(package: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(package);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

/// An archive of these entries, as regular files unless the name says `link:`.
fn archive(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        match name.strip_prefix("link:") {
            Some(name) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, name, "/etc/passwd")
                    .unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Regular);
                builder
                    .append_data(&mut header, name, bytes.as_slice())
                    .unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// The package with `change` applied to its entries.
fn rewritten(package: &[u8], change: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<u8> {
    let mut parts = entries(package);
    change(&mut parts);
    archive(&parts)
}

fn verify(package: &[u8], trusted: &TrustedKeys) -> Result<Verified, PackageError> {
    Package::read(package, 1 << 20)?.verify(trusted)
}

#[test]
fn a_signed_package_round_trips_and_is_the_same_bytes_each_time() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();
    assert!(is_package(&package));
    assert!(!is_package(&component()));
    assert_eq!(
        entries(&package)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["manifest.json", "component.wasm", "signature"]
    );
    let verified = verify(&package, &trusting("acme", &key)).unwrap();
    assert_eq!(verified.component, component());
    assert_eq!(verified.key, key.public());
    let manifest = &verified.manifest;
    assert_eq!(
        (
            manifest.name.as_str(),
            manifest.version.as_str(),
            manifest.vendor.as_str()
        ),
        ("sms", "1.2.0", "acme")
    );
    assert_eq!(manifest.component.sha256, sha256_hex(&component()));
    assert_eq!(manifest.component.size, component().len() as u64);
    assert!(manifest.declares(Capability::Http) && !manifest.declares(Capability::Email));
    assert_eq!(manifest.source(), source());
    // Ed25519 is deterministic and the headers fixed: signing again gives the same bytes.
    assert_eq!(
        Package::build(source(), &component(), &key).unwrap(),
        package
    );
    // A vendor may have several keys; the one that signed is what counts.
    let other = SecretKey::generate().unwrap();
    let both = TrustedKeys::new([
        TrustedVendor {
            vendor: "acme".into(),
            key: other.public(),
        },
        TrustedVendor {
            vendor: "acme".into(),
            key: key.public(),
        },
    ])
    .unwrap();
    assert!(verify(&package, &both).is_ok());
}

#[test]
fn keys_round_trip_as_pem_and_as_text() {
    let key = SecretKey::generate().unwrap();
    let pem = key.to_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let again = SecretKey::from_pem(&pem).unwrap();
    assert_eq!(again.public(), key.public());
    assert!(!format!("{key:?}").contains(&pem[30..60]));

    let text = key.public().to_string();
    assert!(
        text.starts_with("ed25519:") && text.len() == 8 + 44,
        "{text}"
    );
    assert_eq!(text.parse::<PublicKey>().unwrap(), key.public());
    assert_eq!(
        serde_json::from_str::<PublicKey>(&format!("\"{text}\"")).unwrap(),
        key.public()
    );
    for (bad, why) in [
        ("AAAA", "ed25519:"),
        ("rsa:AAAA", "ed25519:"),
        ("ed25519:not base64!", "base64"),
        ("ed25519:AAAA", "32 bytes"),
    ] {
        let e = bad.parse::<PublicKey>().unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    for bad in [
        "",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    ] {
        assert!(SecretKey::from_pem(bad).is_err());
    }
}

#[test]
fn a_tampered_component_is_refused_as_tampered() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();
    let trusted = trusting("acme", &key);
    let flipped = rewritten(&package, |parts| parts[1].1[100] ^= 1);
    let e = verify(&flipped, &trusted).unwrap_err();
    assert!(
        matches!(&e, PackageError::ComponentTampered { expected, actual, .. }
            if *expected == sha256_hex(&component()) && expected != actual),
        "{e}"
    );
    assert_eq!(e.kind(), "package-tampered");
    assert!(e.to_string().contains("changed after signing"), "{e}");
    // Another component altogether, of another size, too.
    let swapped = rewritten(&package, |parts| parts[1].1 = b"\0asm other".to_vec());
    assert_eq!(
        verify(&swapped, &trusted).unwrap_err().kind(),
        "package-tampered"
    );
}

#[test]
fn a_tampered_manifest_is_refused_as_a_bad_signature() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();
    let trusted = trusting("acme", &key);
    // Declaring fewer needs than were signed, to slip one past the tenant.
    let edited = rewritten(&package, |parts| {
        let text = String::from_utf8(parts[0].1.clone()).unwrap();
        let text = text.replace("reads the account SID", "reads nothing much");
        parts[0].1 = text.into_bytes();
    });
    let e = verify(&edited, &trusted).unwrap_err();
    assert!(
        matches!(&e, PackageError::BadSignature { vendor, key: k }
            if vendor == "acme" && *k == key.public().to_string()),
        "{e}"
    );
    assert_eq!(e.kind(), "package-bad-signature");
    // Even a change that means nothing (a space) breaks it: the exact bytes are signed.
    let spaced = rewritten(&package, |parts| parts[0].1.insert(0, b' '));
    assert_eq!(
        verify(&spaced, &trusted).unwrap_err().kind(),
        "package-bad-signature"
    );
    // A signature replaced by garbage, or by a signature of the manifest without the
    // package's context, does not verify either.
    let garbage = rewritten(&package, |parts| {
        let mut record: SignatureRecord = serde_json::from_slice(&parts[2].1).unwrap();
        record.signature = "AAAA".into();
        parts[2].1 = serde_json::to_vec(&record).unwrap();
    });
    assert_eq!(
        verify(&garbage, &trusted).unwrap_err().kind(),
        "package-bad-signature"
    );
    let contextless = rewritten(&package, |parts| {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&key.to_pem().unwrap()).unwrap();
        let signature = signing.sign(&parts[0].1);
        let mut record: SignatureRecord = serde_json::from_slice(&parts[2].1).unwrap();
        record.signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        parts[2].1 = serde_json::to_vec(&record).unwrap();
    });
    assert_eq!(
        verify(&contextless, &trusted).unwrap_err().kind(),
        "package-bad-signature"
    );
}

use ed25519_dalek::pkcs8::DecodePrivateKey as _;

#[test]
fn an_unknown_key_or_another_vendors_key_is_an_untrusted_signer() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();

    let stranger = SecretKey::generate().unwrap();
    for trusted in [TrustedKeys::default(), trusting("acme", &stranger)] {
        let e = verify(&package, &trusted).unwrap_err();
        assert!(
            matches!(&e, PackageError::UnknownSigner { vendor, key: k }
                if vendor == "acme" && *k == key.public().to_string()),
            "{e}"
        );
        assert_eq!(e.kind(), "package-untrusted-signer");
        let message = e.to_string();
        assert!(
            message.contains("`acme`") && message.contains(&key.public().to_string()),
            "the message names the vendor and the key: {message}"
        );
    }

    // The key is trusted, but for globex: it cannot sign as acme.
    let e = verify(&package, &trusting("globex", &key)).unwrap_err();
    assert!(
        matches!(&e, PackageError::VendorMismatch { trusted, claimed, .. }
            if trusted == "globex" && claimed == "acme"),
        "{e}"
    );
    assert_eq!(e.kind(), "package-untrusted-signer");

    // A record naming another vendor than the key's (not covered by the signature) is
    // refused the same way.
    let renamed = rewritten(&package, |parts| {
        let mut record: SignatureRecord = serde_json::from_slice(&parts[2].1).unwrap();
        record.vendor = "globex".into();
        parts[2].1 = serde_json::to_vec(&record).unwrap();
    });
    let e = verify(&renamed, &trusting("acme", &key)).unwrap_err();
    assert!(matches!(e, PackageError::VendorMismatch { .. }), "{e}");
}

#[test]
fn entries_past_their_bounds_are_refused_before_they_are_read() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();
    let size = component().len() as u64;
    let e = Package::read(&package, size - 1).unwrap_err();
    assert_eq!(
        e,
        PackageError::TooLarge {
            entry: "component.wasm",
            size,
            limit: size - 1
        }
    );
    assert!(Package::read(&package, size).is_ok());

    let fat = rewritten(&package, |parts| {
        parts[0].1 = vec![b' '; MAX_MANIFEST_BYTES as usize + 1]
    });
    assert!(matches!(
        Package::read(&fat, 1 << 20).unwrap_err(),
        PackageError::TooLarge {
            entry: "manifest.json",
            ..
        }
    ));
    let fat = rewritten(&package, |parts| {
        parts[2].1 = vec![b' '; MAX_SIGNATURE_BYTES as usize + 1]
    });
    assert!(matches!(
        Package::read(&fat, 1 << 20).unwrap_err(),
        PackageError::TooLarge {
            entry: "signature",
            ..
        }
    ));
}

#[test]
fn what_is_not_a_package_of_the_three_files_is_malformed() {
    let key = SecretKey::generate().unwrap();
    let package = Package::build(source(), &component(), &key).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "not a package"),
        ("a component", component(), "not a package"),
        ("garbage", vec![7; 2048], "not a package"),
        (
            "unknown entry",
            rewritten(&package, |p| p.push(("etc/cron.d/x".into(), b"x".to_vec()))),
            "unknown entry",
        ),
        (
            "duplicate",
            rewritten(&package, |p| p.push(p[1].clone())),
            "twice",
        ),
        (
            "missing signature",
            rewritten(&package, |p| {
                p.pop();
            }),
            "signature is missing",
        ),
        (
            "missing manifest",
            rewritten(&package, |p| {
                p.remove(0);
            }),
            "manifest.json is missing",
        ),
        (
            "a link",
            rewritten(&package, |p| p[2] = ("link:signature".into(), Vec::new())),
            "not a regular file",
        ),
        ("cut short", package[..package.len() - 2048].to_vec(), ""),
        (
            "a signature record that is not one",
            rewritten(&package, |p| p[2].1 = b"{\"algorithm\": 5}".to_vec()),
            "at `algorithm`",
        ),
    ];
    let trusted = trusting("acme", &key);
    for (what, bytes, why) in cases {
        let e = verify(&bytes, &trusted).unwrap_err();
        assert_eq!(e.kind(), "package-invalid", "{what}: {e}");
        assert!(e.to_string().contains(why), "{what}: {e}");
    }
}

#[test]
fn manifest_errors_name_the_field() {
    let cases = [
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\n",
            ".",
            "description",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: x\ncapabilities: [{name: smtp, why: mail}]",
            "capabilities[0].name",
            "unknown variant `smtp`",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: x\ncapabilities: [{name: http, why: ' '}]",
            "capabilities[0].why",
            "say why",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: x\ncapabilities: [{name: http}]",
            "capabilities[0]",
            "missing field `why`",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: x\ncapabilities:\n  - {name: sql, why: a}\n  - {name: sql, why: b}",
            "capabilities[1].name",
            "twice",
        ),
        (
            "name: sms\nversion: '1.0'\nvendor: acme\ndescription: x",
            "version",
            "semantic version",
        ),
        (
            "name: SMS!\nversion: 1.0.0\nvendor: acme\ndescription: x",
            "name",
            "applet name",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: Acme Inc\ndescription: x",
            "vendor",
            "vendor name",
        ),
        (
            "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: x\nvendr: y",
            "vendr",
            "unknown field `vendr`",
        ),
    ];
    for (text, field, why) in cases {
        let e = ManifestSource::parse(text).unwrap_err();
        assert_eq!(e.field, field, "{text}: {e}");
        assert!(e.message.contains(why), "{text}: {e}");
        assert!(e.to_string().contains(&format!("at `{field}`")), "{e}");
    }
}

/// A manifest or a trusted-keys file whose aliases expand a 20 KB string a hundred times over
/// is refused before it is built, naming the limit (issue 14).
#[test]
fn yaml_whose_aliases_expand_past_the_limit_is_refused() {
    let big = format!(
        "name: sms\nversion: 1.0.0\nvendor: acme\ndescription: &a {}\ncapabilities: [{}]\n",
        "x".repeat(20 * 1024),
        vec!["*a"; 100].join(",")
    );
    let e = ManifestSource::parse(&big).unwrap_err();
    assert!(
        e.message.starts_with(
            "the manifest expands through its anchors and aliases to more than 1048576 bytes"
        ),
        "{e}"
    );
    let keys = format!(
        "- {{vendor: &a {}, key: x}}\n{}",
        "x".repeat(20 * 1024),
        "- {vendor: *a, key: x}\n".repeat(100)
    );
    let e = TrustedKeys::parse(&keys).unwrap_err();
    assert!(
        e.starts_with("the file expands through its anchors and aliases to more than"),
        "{e}"
    );
}

#[test]
fn a_signed_manifest_that_breaks_a_rule_is_invalid_naming_the_field() {
    // A vendor's own tool could sign anything: what it signed is checked too.
    let key = SecretKey::generate().unwrap();
    let mut manifest = source().pin(&component());
    manifest.capabilities[1].why = String::new();
    let bytes = manifest.to_bytes();
    let package = rewritten(
        &Package::build(source(), &component(), &key).unwrap(),
        |parts| {
            use base64::Engine as _;
            use ed25519_dalek::Signer as _;
            let signing =
                ed25519_dalek::SigningKey::from_pkcs8_pem(&key.to_pem().unwrap()).unwrap();
            let mut message = SIGNING_CONTEXT.to_vec();
            message.extend_from_slice(&bytes);
            let mut record: SignatureRecord = serde_json::from_slice(&parts[2].1).unwrap();
            record.signature =
                base64::engine::general_purpose::STANDARD.encode(signing.sign(&message).to_bytes());
            parts[2].1 = serde_json::to_vec(&record).unwrap();
            parts[0].1 = bytes.clone();
        },
    );
    let e = verify(&package, &trusting("acme", &key)).unwrap_err();
    assert!(
        matches!(&e, PackageError::Manifest(m) if m.field == "capabilities[1].why"),
        "{e}"
    );
    assert_eq!(e.kind(), "package-invalid");
}

#[test]
fn the_manifest_must_cover_the_components_imports_and_describe() {
    let manifest = source().pin(&component());
    let imports = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // http and secrets declared; data, state and log need no declaration.
    manifest
        .check_component(
            "sms",
            "1.2.0",
            &[Capability::Http, Capability::Secrets],
            &imports(&["data", "http", "log", "secrets", "state"]),
        )
        .unwrap();

    let e = manifest
        .check_component(
            "sms",
            "1.2.0",
            &[Capability::Interactions],
            &imports(&["data", "email", "http", "sql"]),
        )
        .unwrap_err();
    assert_eq!(
        e,
        PackageError::Undeclared(vec![
            Undeclared {
                capability: Capability::Email,
                imported: true
            },
            Undeclared {
                capability: Capability::Sql,
                imported: true
            },
            Undeclared {
                capability: Capability::Interactions,
                imported: false
            },
        ])
    );
    assert_eq!(e.kind(), "package-undeclared-capability");
    let message = e.to_string();
    assert!(
        message.contains("imports email, sql")
            && message.contains("describe declares interactions"),
        "{message}"
    );

    for (name, version, field) in [("other", "1.2.0", "name"), ("sms", "1.2.1", "version")] {
        let e = manifest
            .check_component(name, version, &[], &[])
            .unwrap_err();
        assert!(
            matches!(&e, PackageError::Mismatch { field: f, .. } if *f == field),
            "{e}"
        );
        assert_eq!(e.kind(), "package-invalid");
    }
}

#[test]
fn trusted_keys_parse_from_a_list_or_a_config_naming_what_is_wrong() {
    let a = SecretKey::generate().unwrap().public();
    let b = SecretKey::generate().unwrap().public();
    let list = TrustedKeys::parse(&format!(
        "- {{vendor: acme, key: \"{a}\"}}\n- {{vendor: acme, key: \"{b}\"}}\n"
    ))
    .unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.vendor_of(&b), Some("acme"));
    let config = TrustedKeys::parse(&format!(
        "listen: 0.0.0.0:80\ntrusted_vendors:\n  - vendor: globex\n    key: {a}\n"
    ))
    .unwrap();
    assert_eq!(config.vendor_of(&a), Some("globex"));
    let json = TrustedKeys::parse(&format!(r#"[{{"vendor": "acme", "key": "{a}"}}]"#)).unwrap();
    assert_eq!(json.len(), 1);

    for (text, why) in [
        (
            format!(
                "trusted_vendors: [{{vendor: acme, key: \"{a}\"}}, {{vendor: acme, key: nope}}]"
            ),
            "at `trusted_vendors[1].key`",
        ),
        (
            format!("- {{vendor: acme, key: \"{a}\", trust: 3}}"),
            "unknown field `trust`",
        ),
        (
            format!("- {{vendor: 'Acme Inc', key: \"{a}\"}}"),
            "at `[0].vendor`",
        ),
        (
            format!("- {{vendor: acme, key: \"{a}\"}}\n- {{vendor: globex, key: \"{a}\"}}"),
            "both `acme` and `globex`",
        ),
        ("listen: x".to_owned(), "no `trusted_vendors`"),
    ] {
        let e = TrustedKeys::parse(&text).unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
}

/// What signing and verifying an 18 MB component costs (a Python applet's size). Prints
/// the times; asserts only a generous bound, since the machine is shared.
#[test]
fn an_18_mb_component_signs_and_verifies_in_well_under_a_second() {
    let key = SecretKey::generate().unwrap();
    let big: Vec<u8> = (0..18 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let start = std::time::Instant::now();
    let package = Package::build(source(), &big, &key).unwrap();
    let built = start.elapsed();
    let start = std::time::Instant::now();
    let verified = Package::read(&package, big.len() as u64)
        .unwrap()
        .verify(&trusting("acme", &key))
        .unwrap();
    let checked = start.elapsed();
    assert_eq!(verified.component.len(), big.len());
    eprintln!("18 MiB component: package and sign {built:?}, read and verify {checked:?}");
    assert!(checked < std::time::Duration::from_secs(5), "{checked:?}");
}
