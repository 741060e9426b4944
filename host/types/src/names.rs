//! The naming rules: one place for every name that reaches a path, a URL or a store key, so
//! that an applet the runtime accepts can always be named in a plan, and a name refused by
//! one entry (the API) is refused by every other (the CLI, a grants file) too.
//!
//! Two rules, by where a name comes from. Names coda's users choose (plans, applets,
//! tenants, secrets, vendors) are identifiers: [`is_valid_name`]. Names made by other
//! systems (interaction ids, skills, agents, event names) are labels: [`is_valid_label`],
//! wider, but never a path (no `/`, `\`, no `.` or `..`), never a control character. Each
//! [`NameKind`] says which rule and how long; [`check_name`] checks a name by its kind.

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

/// What a name names: its rule and its longest length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Plan,
    Applet,
    Tenant,
    Secret,
    Vendor,
    /// An interaction's id, as the contact center made it.
    Interaction,
    /// A skill an interaction is routed by.
    Skill,
    /// An agent's id.
    Agent,
    /// A named event a waiting run is woken by.
    Event,
    /// A tenant's intake connection (where a contact-center platform delivers).
    Connection,
}

/// The longest label (interaction id, skill, agent), in bytes.
pub const MAX_LABEL_LEN: usize = 128;

impl NameKind {
    /// The longest name of this kind, in bytes.
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Plan
            | NameKind::Applet
            | NameKind::Tenant
            | NameKind::Secret
            | NameKind::Vendor
            | NameKind::Event
            | NameKind::Connection => MAX_NAME_LEN,
            NameKind::Interaction | NameKind::Skill | NameKind::Agent => MAX_LABEL_LEN,
        }
    }

    /// Whether names of this kind are identifiers ([`is_valid_name`]) rather than labels.
    fn is_identifier(self) -> bool {
        !matches!(
            self,
            NameKind::Interaction | NameKind::Skill | NameKind::Agent | NameKind::Event
        )
    }

    /// What it is called in a message.
    pub fn noun(self) -> &'static str {
        match self {
            NameKind::Plan => "plan name",
            NameKind::Applet => "applet name",
            NameKind::Tenant => "tenant id",
            NameKind::Secret => "secret name",
            NameKind::Vendor => "vendor name",
            NameKind::Interaction => "interaction id",
            NameKind::Skill => "skill name",
            NameKind::Agent => "agent id",
            NameKind::Event => "event name",
            NameKind::Connection => "connection name",
        }
    }

    /// The rule, in words, for a message.
    pub fn rule(self) -> String {
        if self.is_identifier() {
            format!(
                "1 to {} characters of a-z 0-9 . _ -, the first a letter or digit",
                self.max_len()
            )
        } else {
            format!(
                "1 to {} bytes, no control characters, no `/` or `\\`, not only dots, \
                 no space at either end",
                self.max_len()
            )
        }
    }
}

/// A name refused by its kind's rule; the message quotes it (shortened) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} is not a valid {noun}: {rule}", noun = kind.noun(), rule = kind.rule())]
pub struct NameError {
    pub kind: NameKind,
    /// The name as quoted in the message: escaped, and cut short if long.
    shown: String,
}

/// Checks `name` by the rule of its `kind`.
pub fn check_name(kind: NameKind, name: &str) -> Result<(), NameError> {
    let valid = if kind.is_identifier() {
        name.len() <= kind.max_len() && is_valid_name(name)
    } else {
        name.len() <= kind.max_len() && is_valid_label(name)
    };
    if valid {
        return Ok(());
    }
    // A refused name may be huge or hold anything: quote a short, escaped prefix.
    const SHOWN: usize = 40;
    let mut shown: String = name.chars().take(SHOWN).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    Err(NameError {
        kind,
        shown: format!("{shown:?}"),
    })
}

/// Whether `label` is a valid label, whatever its length: not empty, no control character,
/// no `/` or `\` (a label may end up in a path or a URL), not only dots (`.`, `..`), no
/// white space at either end.
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && !label
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
        && !label.chars().all(|c| c == '.')
        && label.trim() == label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_refuses_paths_controls_and_what_is_too_long() {
        let kinds = [
            NameKind::Plan,
            NameKind::Applet,
            NameKind::Tenant,
            NameKind::Secret,
            NameKind::Vendor,
            NameKind::Interaction,
            NameKind::Skill,
            NameKind::Agent,
            NameKind::Event,
        ];
        for kind in kinds {
            for bad in [
                String::new(),
                "a\0b".into(),
                "../../etc".into(),
                "..".into(),
                ".".into(),
                "a/b".into(),
                "a\\b".into(),
                "line\nbreak".into(),
                " padded".into(),
                "x".repeat(kind.max_len() + 1),
                "x".repeat(900 * 1024),
            ] {
                let error = check_name(kind, &bad).expect_err(&format!("{kind:?} {bad:?}"));
                let message = error.to_string();
                assert!(message.contains(kind.noun()), "{message}");
                assert!(
                    message.len() < 400,
                    "a long name is quoted short: {message}"
                );
            }
            assert_eq!(
                check_name(kind, &"x".repeat(kind.max_len())),
                Ok(()),
                "{kind:?}"
            );
            assert_eq!(check_name(kind, "post-call.v2"), Ok(()), "{kind:?}");
        }
        // Labels take what other systems make: capitals, spaces inside, colons, accents.
        for good in [
            "Sales EN",
            "CA1f:2024-05-01",
            "agent@example.com",
            "Ventes été",
        ] {
            assert_eq!(check_name(NameKind::Skill, good), Ok(()), "{good}");
            assert_eq!(check_name(NameKind::Interaction, good), Ok(()), "{good}");
        }
        // Identifiers do not.
        for bad in ["Sales", "a b", "sec@ret", "-lead"] {
            assert!(check_name(NameKind::Secret, bad).is_err(), "{bad}");
        }
    }
}
