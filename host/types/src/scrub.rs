//! Scrubbing secret values out of what the host writes.
//!
//! Each step gets one [`Scrubber`] (it travels in the step's [`crate::InvocationContext`]).
//! Whatever puts a secret value in the step's hands records it there: the runtime for
//! every `secrets.get` the applet makes, a capability for a credential it uses on the
//! step's behalf (an SMTP password, a database URL's password). Every string the host
//! makes from the step — the errors handed to the applet, the effect journal, the step's
//! journal entry, note, logs, data and state, `LastError`, the tracing events — is passed
//! through the same scrubber before it is written, so a value that got into a string by
//! any route (an HTTP client echoing a URL, a server echoing a password, an applet
//! logging it) is written as `[secret:NAME]`.
//!
//! A value is matched as it is and in the forms it takes on its way out: percent-encoded
//! (as a URL's query, path or user info, or a form carries it, and encoded twice),
//! JSON-escaped (`/` as `\/` too), HTML-escaped (as the common escapers write it), and
//! base64-encoded at any alignment (a Basic `Authorization` header is the base64 of
//! `user:password`; the stable middle of the encoding is matched, so the secret's
//! neighbours do not matter).
//!
//! Values shorter than [`MIN_SECRET_BYTES`] are not scrubbed: replacing every `abc` in a
//! run's journal would destroy it, and a three-byte secret is guessable anyway.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::capabilities::{CapabilityReply, HttpResponse, SqlRows};
use crate::{HostError, InvocationReport, InvokeError, LogLine, Outcome, Value, Values};

/// Secret values shorter than this many bytes are not scrubbed (see the module's doc).
pub const MIN_SECRET_BYTES: usize = 4;

/// A base64 form is matched only when its stable middle has at least this many characters:
/// a shorter run of base64 letters turns up in ordinary text.
const MIN_BASE64_CORE: usize = 6;

/// The percent-encode sets of the WHATWG URL standard, which the `url` crate (and so every
/// URL reqwest prints) applies to a query, a path and user info.
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
const SPECIAL_QUERY: &AsciiSet = &QUERY.add(b'\'');
const PATH: &AsciiSet = &QUERY.add(b'?').add(b'`').add(b'{').add(b'}');
/// A path segment pushed whole (`/` and `%` encoded too), as `url` and reqwest's builders do.
const PATH_SEGMENT: &AsciiSet = &PATH.add(b'/').add(b'%');
const SPECIAL_PATH_SEGMENT: &AsciiSet = &PATH_SEGMENT.add(b'\\');
const USERINFO: &AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');
const COMPONENT: &AsciiSet = &USERINFO.add(b'$').add(b'%').add(b'&').add(b'+').add(b',');
/// `application/x-www-form-urlencoded`: all but `*-._` and alphanumerics (space as `+`).
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// The secret values one step read, and the scrubbing of text against them. Cloning shares
/// the set: the runtime, the capabilities and the engine all hold the step's one scrubber.
#[derive(Clone, Default)]
pub struct Scrubber {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// (name, value), in the order first recorded.
    secrets: Vec<(String, String)>,
    /// Built on first use after a change: every form of every value, and its replacement.
    matcher: Option<Arc<Matcher>>,
}

struct Matcher {
    patterns: AhoCorasick,
    replacements: Vec<String>,
}

impl fmt::Debug for Scrubber {
    /// Names only: the values are what this type keeps out of text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Scrubber")
            .field(
                "secrets",
                &inner.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A context's scrubber is not part of what it is: two contexts at the same place are equal
/// whatever their steps read.
impl PartialEq for Scrubber {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Scrubber {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a usable set: at worst one value unrecorded.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a secret value the step holds, under the name its replacement shows. Values
    /// shorter than [`MIN_SECRET_BYTES`] are ignored.
    pub fn record(&self, name: &str, value: &str) {
        if value.len() < MIN_SECRET_BYTES {
            return;
        }
        let mut inner = self.lock();
        if inner.secrets.iter().any(|(_, v)| v == value) {
            return;
        }
        inner.secrets.push((name.to_owned(), value.to_owned()));
        inner.matcher = None;
    }

    /// Whether no value has been recorded (scrubbing then changes nothing).
    pub fn is_empty(&self) -> bool {
        self.lock().secrets.is_empty()
    }

    fn matcher(&self) -> Option<Arc<Matcher>> {
        let mut inner = self.lock();
        if inner.secrets.is_empty() {
            return None;
        }
        if inner.matcher.is_none() {
            inner.matcher = Matcher::build(&inner.secrets).map(Arc::new);
        }
        inner.matcher.clone()
    }

    /// `text` with every form of every recorded value replaced by `[secret:NAME]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.matcher() {
            Some(m) if m.patterns.is_match(text) => {
                Cow::Owned(m.patterns.replace_all(text, &m.replacements))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// The same for bytes (a response body), replacing matches where they are.
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match self.matcher() {
            Some(m) if m.patterns.is_match(bytes) => {
                let replacements: Vec<&[u8]> =
                    m.replacements.iter().map(|r| r.as_bytes()).collect();
                Cow::Owned(m.patterns.replace_all_bytes(bytes, &replacements))
            }
            _ => Cow::Borrowed(bytes),
        }
    }

    /// Scrubs a string in place.
    pub fn string(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }

    /// Scrubs every string of a JSON value, object keys included.
    pub fn json(&self, json: &mut serde_json::Value) {
        if self.is_empty() {
            return;
        }
        match json {
            serde_json::Value::String(s) => self.string(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut key, mut value) in entries {
                    self.string(&mut key);
                    self.json(&mut value);
                    map.insert(key, value);
                }
            }
            serde_json::Value::Number(n) => {
                // A numeric secret (a PIN) stored as a number is a secret all the same.
                if let Cow::Owned(clean) = self.scrub(&n.to_string()) {
                    *json = serde_json::Value::String(clean);
                }
            }
            serde_json::Value::Null | serde_json::Value::Bool(_) => {}
        }
    }

    /// Scrubs a data-source value; a JSON value stays valid JSON.
    pub fn value(&self, value: &mut Value) {
        match value {
            Value::Text(s) => self.string(s),
            Value::Json(text) => {
                if let Cow::Owned(_) = self.scrub(text) {
                    match serde_json::from_str::<serde_json::Value>(text) {
                        Ok(mut json) => {
                            self.json(&mut json);
                            *text = json.to_string();
                        }
                        Err(_) => self.string(text),
                    }
                }
            }
            Value::Integer(i) => {
                if let Cow::Owned(clean) = self.scrub(&i.to_string()) {
                    *value = Value::Text(clean);
                }
            }
            Value::Null | Value::Boolean(_) | Value::Number(_) => {}
        }
    }

    /// Scrubs data sources or state, names included.
    pub fn values(&self, values: &mut Values) {
        if self.is_empty() {
            return;
        }
        let entries = std::mem::take(values);
        for (mut name, mut value) in entries {
            self.string(&mut name);
            self.value(&mut value);
            values.insert(name, value);
        }
    }

    /// Scrubs anything that knows how to be scrubbed.
    pub fn apply<T: Scrub + ?Sized>(&self, target: &mut T) {
        if !self.is_empty() {
            target.scrub_with(self);
        }
    }
}

impl Matcher {
    fn build(secrets: &[(String, String)]) -> Option<Matcher> {
        let mut patterns: Vec<String> = Vec::new();
        let mut replacements = Vec::new();
        for (name, value) in secrets {
            for form in forms(value) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                    replacements.push(format!("[secret:{name}]"));
                }
            }
        }
        // The longest match wins, so a value inside a longer one's encoding does not leave
        // the rest of it behind.
        let patterns = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Matcher {
            patterns,
            replacements,
        })
    }
}

/// The forms a value takes in text the host writes.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned()];
    let json = serde_json::to_string(value).unwrap_or_default();
    forms.push(
        json.get(1..json.len().saturating_sub(1))
            .unwrap_or("")
            .to_owned(),
    );
    for set in [
        QUERY,
        SPECIAL_QUERY,
        PATH,
        PATH_SEGMENT,
        SPECIAL_PATH_SEGMENT,
        USERINFO,
        COMPONENT,
        NON_ALPHANUMERIC,
    ] {
        let encoded = utf8_percent_encode(value, set).to_string();
        forms.push(encoded.to_ascii_lowercase_hex());
        forms.push(encoded);
    }
    forms.push(
        utf8_percent_encode(value, FORM)
            .to_string()
            .replace("%20", "+"),
    );
    // A JSON encoder that escapes `/` too (PHP's, some Java ones): `a\/b`.
    let slash_escaped: Vec<String> = forms
        .iter()
        .filter(|f| f.contains('/'))
        .map(|f| f.replace('/', "\\/"))
        .collect();
    forms.extend(slash_escaped);
    // Encoded twice (a URL carried in another URL's query, a redirect's `next=`): each
    // `%` of a percent-encoded form becomes `%25`.
    let twice: Vec<String> = forms
        .iter()
        .filter(|f| f.contains('%'))
        .flat_map(|f| {
            let again = f.replace('%', "%25");
            [again.to_ascii_lowercase_hex(), again]
        })
        .collect();
    forms.extend(twice);
    // HTML-escaped, as a server echoes a value into a page: the escapers differ in which
    // characters they escape and how (`'` as `&#39;`, `&#x27;` or `&apos;`).
    forms.extend(html_escaped(value));
    let engines = [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for engine in engines {
        for offset in 0..3 {
            forms.extend(base64_core(engine, value.as_bytes(), offset));
        }
    }
    forms.retain(|f| f.len() >= MIN_SECRET_BYTES);
    forms.sort();
    forms.dedup();
    forms
}

/// `value` as the common HTML escapers write it. Only values with a character to escape
/// yield forms different from the plain one.
fn html_escaped(value: &str) -> Vec<String> {
    if !value.contains(['&', '<', '>', '"', '\'', '/']) {
        return Vec::new();
    }
    let escape = |quote: &str, apostrophe: &str, slash: &str| {
        let mut out = String::with_capacity(value.len() + 16);
        for c in value.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str(quote),
                '\'' => out.push_str(apostrophe),
                '/' => out.push_str(slash),
                c => out.push(c),
            }
        }
        out
    };
    vec![
        // Text content only (`&`, `<`, `>`).
        escape("\"", "'", "/"),
        // Attribute-safe, as Rust's askama, Python's html.escape, Go's html.EscapeString.
        escape("&quot;", "&#39;", "/"),
        escape("&#34;", "&#39;", "/"),
        // OWASP's recommendation, as some Java and JS escapers follow it.
        escape("&quot;", "&#x27;", "&#x2F;"),
        escape("&quot;", "&#x27;", "/"),
        // XML's and HTML5's named entity.
        escape("&quot;", "&apos;", "/"),
    ]
}

/// The characters of the base64 of `value` that do not depend on what surrounds it, when
/// it starts `offset` bytes into the encoded text: the first characters share bits with the
/// bytes before, the last with the bytes after.
fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    value: &[u8],
    offset: usize,
) -> Option<String> {
    let mut bytes = vec![0u8; offset];
    bytes.extend_from_slice(value);
    let encoded = engine.encode(&bytes);
    let start = (offset * 8).div_ceil(6);
    let end = bytes.len() * 8 / 6;
    let core = encoded.get(start..end)?;
    (core.len() >= MIN_BASE64_CORE).then(|| core.to_owned())
}

trait LowercaseHex {
    fn to_ascii_lowercase_hex(&self) -> String;
}

impl LowercaseHex for String {
    /// The same percent-encoding with lowercase hex digits (`%2f`), which some clients write.
    fn to_ascii_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                for _ in 0..2 {
                    if let Some(h) = chars.next() {
                        out.push(h.to_ascii_lowercase());
                    }
                }
            }
        }
        out
    }
}

/// A database URL as it may be shown in a message or to its owner: a password in the user
/// info (`postgres://user:***@host/db`) or in the query (`?password=***`, `sslpassword`,
/// any case: libpq takes both) is hidden. The one rule for which parts of a database URL
/// are secret; the store's messages and the tenant's ceiling document both use it.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    // The authority ends at the first `/`, `?` or `#`: an `@` past it is not user info.
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{authority}{tail}", &url[..scheme_end])
}

/// What a [`Scrubber`] can clean in place.
pub trait Scrub {
    fn scrub_with(&mut self, scrubber: &Scrubber);
}

impl Scrub for String {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        scrubber.string(self);
    }
}

impl Scrub for serde_json::Value {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        scrubber.json(self);
    }
}

impl Scrub for Values {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        scrubber.values(self);
    }
}

impl Scrub for u64 {
    fn scrub_with(&mut self, _: &Scrubber) {}
}

impl<T: Scrub> Scrub for Vec<T> {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        self.iter_mut().for_each(|t| t.scrub_with(scrubber));
    }
}

impl<T: Scrub, E: Scrub> Scrub for Result<T, E> {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        match self {
            Ok(t) => t.scrub_with(scrubber),
            Err(e) => e.scrub_with(scrubber),
        }
    }
}

impl Scrub for HostError {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        match self {
            HostError::NotGranted(m)
            | HostError::LimitExceeded(m)
            | HostError::Invalid(m)
            | HostError::Unavailable(m)
            | HostError::Rejected(m) => scrubber.string(m),
        }
    }
}

impl Scrub for HttpResponse {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        for (name, value) in &mut self.headers {
            scrubber.string(name);
            scrubber.string(value);
        }
        if let Cow::Owned(clean) = scrubber.scrub_bytes(&self.body) {
            self.body = clean;
        }
    }
}

impl Scrub for SqlRows {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        self.columns.scrub_with(scrubber);
        for row in &mut self.rows {
            row.iter_mut().for_each(|v| scrubber.value(v));
        }
    }
}

impl Scrub for CapabilityReply {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        match self {
            CapabilityReply::Http(response) => response.scrub_with(scrubber),
            CapabilityReply::SqlQuery(rows) => rows.scrub_with(scrubber),
            CapabilityReply::SqlExecute(changed) => changed.scrub_with(scrubber),
            CapabilityReply::Email(text)
            | CapabilityReply::Secret(text)
            | CapabilityReply::Interactions(text) => text.scrub_with(scrubber),
            CapabilityReply::Kv(answer) => answer.scrub_with(scrubber),
        }
    }
}

impl Scrub for LogLine {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        scrubber.string(&mut self.message);
    }
}

impl Scrub for Outcome {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        match self {
            Outcome::Exit(exit) => scrubber.string(exit),
            Outcome::Pause { exit, .. } => scrubber.string(exit),
            Outcome::Wait {
                event,
                on_event,
                on_timeout,
                ..
            } => {
                scrubber.string(event);
                scrubber.string(on_event);
                scrubber.string(on_timeout);
            }
            Outcome::Route { plan, .. } => scrubber.string(plan),
        }
    }
}

impl Scrub for InvokeError {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        match self {
            InvokeError::Failure(f) => {
                scrubber.string(&mut f.code);
                scrubber.string(&mut f.message);
            }
            InvokeError::LimitExceeded(_) => {}
            InvokeError::Trap { message } | InvokeError::InvalidResult { message } => {
                scrubber.string(message)
            }
        }
    }
}

impl Scrub for InvocationReport {
    fn scrub_with(&mut self, scrubber: &Scrubber) {
        self.result.scrub_with(scrubber);
        scrubber.values(&mut self.data_changes);
        scrubber.values(&mut self.state_changes);
        self.logs.scrub_with(scrubber);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &str = "s3cr3t/Tok+en=?&x y";

    fn scrubber() -> Scrubber {
        let s = Scrubber::default();
        s.record("crm", SECRET);
        s
    }

    fn clean(text: &str) -> String {
        scrubber().scrub(text).into_owned()
    }

    #[test]
    fn plain_and_encoded_forms_are_replaced() {
        let url = url_with_query();
        let mut with_path = url::Url::parse("https://api.invalid/").unwrap();
        with_path.path_segments_mut().unwrap().push(SECRET);
        let mut with_user = url::Url::parse("https://api.invalid/").unwrap();
        with_user.set_username(SECRET).unwrap();
        with_user.set_password(Some(SECRET)).unwrap();
        for text in [
            with_path.to_string(),
            with_user.to_string(),
            format!("error for url (https://api.invalid/x?key={SECRET})"),
            format!("key={}", utf8_percent_encode(SECRET, NON_ALPHANUMERIC)),
            format!("key={}", utf8_percent_encode(SECRET, FORM)).replace("%20", "+"),
            url.clone(),
            serde_json::json!({ "token": SECRET }).to_string(),
            format!("Basic {}", STANDARD.encode(format!("user:{SECRET}"))),
            format!("Basic {}", STANDARD.encode(format!("us:{SECRET}"))),
            format!("Basic {}", STANDARD.encode(format!("u:{SECRET}:x"))),
            URL_SAFE.encode(format!("{SECRET}!")),
        ] {
            let out = clean(&text);
            assert!(out.contains("[secret:crm]"), "{text} → {out}");
            assert!(!out.contains(SECRET), "{out}");
        }
        assert!(
            !url.contains(SECRET),
            "the URL holds only an encoded form: {url}"
        );
    }

    /// How a URL client prints a URL with the value in its query, path and user info:
    /// what reqwest's errors echo.
    fn url_with_query() -> String {
        let mut url = url::Url::parse("https://api.invalid/").unwrap();
        url.set_query(Some(&format!("key={SECRET}")));
        url.to_string()
    }

    /// Forms a value takes when an HTTP server echoes it into HTML, a client encodes an
    /// already encoded URL again, or a JSON encoder escapes `/`.
    #[test]
    fn html_escaped_double_encoded_and_slash_escaped_forms_are_replaced() {
        let s = Scrubber::default();
        let value = "p<a>ss&\"w'rd/9%";
        s.record("smtp", value);
        let once = utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
        for text in [
            "<p>p&lt;a&gt;ss&amp;&quot;w&#39;rd/9%</p>".to_owned(),
            "<p>p&lt;a&gt;ss&amp;&quot;w&#x27;rd&#x2F;9%</p>".to_owned(),
            "<p>p&lt;a&gt;ss&amp;&quot;w&apos;rd/9%</p>".to_owned(),
            "<p>p&lt;a&gt;ss&amp;\"w'rd/9%</p>".to_owned(),
            format!("next={}", once.replace('%', "%25")),
            format!("next={}", once.replace('%', "%25").to_ascii_lowercase()),
            format!(
                "{{\"p\":{}}}",
                serde_json::to_string(value).unwrap().replace('/', "\\/")
            ),
        ] {
            let out = s.scrub(&text).into_owned();
            assert!(out.contains("[secret:smtp]"), "{text} → {out}");
        }
    }

    #[test]
    fn a_database_url_is_shown_without_its_passwords() {
        for (url, shown) in [
            ("postgres://u:pw@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?password=pw",
                "postgres://h/db?password=***",
            ),
            (
                "postgres://u@h1,h2:5/db?sslmode=require&SSLPassword=pw#x",
                "postgres://u@h1,h2:5/db?sslmode=require&SSLPassword=***#x",
            ),
            // An `@` in the query is not the end of user info.
            ("postgres://h/db?options=a@b", "postgres://h/db?options=a@b"),
            ("postgres://u:p@w@h/db", "postgres://u:***@h/db"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn short_values_and_unrelated_text_are_left_alone() {
        let s = Scrubber::default();
        s.record("pin", "abc");
        assert!(s.is_empty());
        assert_eq!(s.scrub("abc abc"), "abc abc");
        let s = scrubber();
        assert!(matches!(s.scrub("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_values_stay_json_and_numbers_are_scrubbed() {
        let s = Scrubber::default();
        s.record("pin", "482913");
        let mut value = Value::Json(r#"{"a":482913,"b":"x482913y","482913":[1]}"#.into());
        s.value(&mut value);
        let Value::Json(text) = &value else {
            panic!("{value:?}")
        };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["a"], "[secret:pin]");
        assert_eq!(json["b"], "x[secret:pin]y");
        assert!(json.get("[secret:pin]").is_some(), "{json}");
        let mut number = Value::Integer(482913);
        s.value(&mut number);
        assert_eq!(number, Value::Text("[secret:pin]".into()));
    }

    #[test]
    fn bytes_and_errors_are_scrubbed() {
        let s = scrubber();
        let mut response = HttpResponse {
            status: 200,
            headers: vec![("x-echo".into(), SECRET.into())],
            body: format!("{{\"echo\": \"{SECRET}\"}}").into_bytes(),
        };
        s.apply(&mut response);
        assert!(!String::from_utf8_lossy(&response.body).contains(SECRET));
        assert_eq!(response.headers[0].1, "[secret:crm]");
        let mut error: Result<HttpResponse, HostError> =
            Err(HostError::Unavailable(format!("for url ({SECRET})")));
        s.apply(&mut error);
        assert_eq!(
            error,
            Err(HostError::Unavailable("for url ([secret:crm])".into()))
        );
    }

    #[test]
    fn debug_shows_names_only() {
        let text = format!("{:?}", scrubber());
        assert!(text.contains("crm") && !text.contains(SECRET), "{text}");
    }
}
