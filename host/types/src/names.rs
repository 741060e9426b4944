//! The naming rules shared by plans and applets: one place, so that an applet the runtime
//! accepts can always be named in a plan.

/// The longest plan or applet name (and version), in bytes; see [`is_valid_name`].
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` is a valid plan or applet name: 1 to [`MAX_NAME_LEN`] characters of
/// `a-z 0-9 . _ -`, the first a letter or digit.
///
/// Lower case only, so that two names never differ by case alone, and no `@` or `/`, so a
/// name is safe in an applet reference, a URL path and a file name.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

/// Whether `version` is an exact semantic version: `MAJOR.MINOR.PATCH` without leading
/// zeros, optionally followed by `-PRERELEASE` and `+BUILD` (dot-separated identifiers of
/// `0-9 A-Z a-z -`). Ranges (`^0.1`, `0.1.*`) and partial versions (`0.1`) are refused.
pub fn is_exact_version(version: &str) -> bool {
    if version.len() > MAX_NAME_LEN {
        return false;
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |part: &str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (part == "0" || !part.starts_with('0'))
    };
    let identifiers = |s: &str| {
        s.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(identifiers)
        && build.is_none_or(identifiers)
}
