//! What validation needs to know about the world outside one plan: the installed applets
//! and the other plans of the tenant.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use coda_types::AppletInfo;

use crate::plan::{AppletRef, PlanType};

/// The installed applets and known plans a plan is validated against.
///
/// The store implements this over a tenant's rows; [`MemoryCatalog`] holds them in memory.
pub trait Catalog {
    /// The applet installed under exactly this name and version.
    fn applet(&self, applet: &AppletRef) -> Option<&AppletInfo>;
    /// The installed versions of the applet `name`, oldest first; empty if none.
    fn versions(&self, name: &str) -> Vec<String>;
    /// The type of the plan named `plan`, if there is one.
    fn plan_type(&self, plan: &str) -> Option<PlanType>;
}

/// A [`Catalog`] held in memory, built with [`MemoryCatalog::with_applet`] and
/// [`MemoryCatalog::with_plan`].
#[derive(Debug, Clone, Default)]
pub struct MemoryCatalog {
    /// Applet names to versions to what each version describes.
    applets: BTreeMap<String, BTreeMap<String, AppletInfo>>,
    plans: BTreeMap<String, PlanType>,
}

impl MemoryCatalog {
    pub fn new() -> MemoryCatalog {
        MemoryCatalog::default()
    }

    /// Adds an applet under its `name` and `version`, replacing one already there.
    pub fn with_applet(mut self, info: AppletInfo) -> MemoryCatalog {
        self.insert_applet(info);
        self
    }

    /// Adds a plan's name and type, replacing one already there.
    pub fn with_plan(mut self, name: impl Into<String>, plan_type: PlanType) -> MemoryCatalog {
        self.insert_plan(name, plan_type);
        self
    }

    /// Adds an applet; returns the one it replaced.
    pub fn insert_applet(&mut self, info: AppletInfo) -> Option<AppletInfo> {
        self.applets
            .entry(info.name.clone())
            .or_default()
            .insert(info.version.clone(), info)
    }

    /// Adds a plan; returns the type it had before.
    pub fn insert_plan(
        &mut self,
        name: impl Into<String>,
        plan_type: PlanType,
    ) -> Option<PlanType> {
        self.plans.insert(name.into(), plan_type)
    }

    /// Every applet, by name then version as text.
    pub fn applets(&self) -> impl Iterator<Item = &AppletInfo> {
        self.applets.values().flat_map(BTreeMap::values)
    }

    /// Every plan name with its type, by name.
    pub fn plans(&self) -> impl Iterator<Item = (&str, PlanType)> {
        self.plans.iter().map(|(name, t)| (name.as_str(), *t))
    }
}

impl Catalog for MemoryCatalog {
    fn applet(&self, applet: &AppletRef) -> Option<&AppletInfo> {
        self.applets.get(applet.name())?.get(applet.version())
    }

    fn versions(&self, name: &str) -> Vec<String> {
        let mut versions: Vec<String> = self
            .applets
            .get(name)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        versions.sort_by(|a, b| compare_versions(a, b));
        versions
    }

    fn plan_type(&self, plan: &str) -> Option<PlanType> {
        self.plans.get(plan).copied()
    }
}

/// Orders versions by semver precedence (numeric parts as numbers, a pre-release before its
/// release), falling back to text order for what is not a version, so the order is total.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn key(v: &str) -> Option<([u64; 3], Option<&str>)> {
        let v = v.split_once('+').map_or(v, |(v, _)| v);
        let (core, pre) = match v.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (v, None),
        };
        let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
        let key = [parts.next()??, parts.next()??, parts.next()??];
        parts.next().is_none().then_some((key, pre))
    }
    fn compare_pre(a: &str, b: &str) -> Ordering {
        // Identifier by identifier: numbers compare as numbers and before words.
        let mut a_ids = a.split('.');
        let mut b_ids = b.split('.');
        loop {
            match (a_ids.next(), b_ids.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => {
                    let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => x.cmp(y),
                    };
                    if order != Ordering::Equal {
                        return order;
                    }
                }
            }
        }
    }
    let order = match (key(a), key(b)) {
        (Some((ka, pa)), Some((kb, pb))) => ka.cmp(&kb).then_with(|| match (pa, pb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(pa), Some(pb)) => compare_pre(pa, pb),
        }),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    order.then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str) -> AppletInfo {
        AppletInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            exits: vec!["next".into()],
            config_schema: serde_json::json!(true),
            needs_live_party: false,
            capabilities: vec![],
        }
    }

    #[test]
    fn versions_are_in_semver_order() {
        let catalog = [
            "0.10.0",
            "0.2.0",
            "0.2.0-rc.1",
            "0.2.0-beta",
            "1.0.0",
            "0.2.0-rc.10",
        ]
        .into_iter()
        .fold(MemoryCatalog::new(), |c, v| c.with_applet(info("sms", v)));
        assert_eq!(
            catalog.versions("sms"),
            [
                "0.2.0-beta",
                "0.2.0-rc.1",
                "0.2.0-rc.10",
                "0.2.0",
                "0.10.0",
                "1.0.0"
            ]
        );
        assert!(catalog.versions("email").is_empty());
        assert_eq!(compare_versions("x", "0.1.0"), Ordering::Greater);
        assert_eq!(compare_versions("0.1.0+a", "0.1.0+b"), Ordering::Less);
    }

    #[test]
    fn looks_up_exact_versions_and_plans() {
        let catalog = MemoryCatalog::new()
            .with_applet(info("sms", "0.1.0"))
            .with_plan("post-call", PlanType::Unattended);
        let r: AppletRef = "sms@0.1.0".parse().unwrap();
        assert_eq!(catalog.applet(&r).unwrap().version, "0.1.0");
        assert!(catalog.applet(&"sms@0.1.1".parse().unwrap()).is_none());
        assert_eq!(catalog.plan_type("post-call"), Some(PlanType::Unattended));
        assert_eq!(catalog.plan_type("live"), None);
        assert_eq!(catalog.applets().count(), 1);
        assert_eq!(
            catalog.plans().collect::<Vec<_>>(),
            [("post-call", PlanType::Unattended)]
        );
    }
}
