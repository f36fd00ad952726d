//! Version skew policies of `kubeadm upgrade` (upstream's `phases/upgrade/policy.go`): the control plane moves
//! at most one minor version up or down at a time, never above kubeadm's own minor version nor below the minimum
//! supported control plane; unstable versions need `--allow-*-upgrades`; kubelets may not fall more than one minor
//! behind. Errors are mandatory or skippable (with `--force`).
//!
//! One difference, since this kubeadm installs only the components of its own build: a target with kubeadm's
//! minor version and a higher patch (e.g. v1.33.1 for kubeadm v1.33.0) is accepted without `--force` — it names
//! images of this build retagged by the operator — where upstream asks to upgrade kubeadm first.

use std::cmp::Ordering;
use std::fmt;

/// How many minor versions the control plane may move in one upgrade (up or down), and how far kubelets may lag.
pub const MAXIMUM_ALLOWED_MINOR_VERSION_UPGRADE_SKEW: u64 = 1;
pub const MAXIMUM_ALLOWED_MINOR_VERSION_DOWNGRADE_SKEW: u64 = 1;
pub const MAXIMUM_ALLOWED_MINOR_VERSION_KUBELET_SKEW: u64 = 1;
/// Upstream's `MinimumControlPlaneVersion` for 1.33.
pub const MINIMUM_CONTROL_PLANE_VERSION: &str = "v1.32.0";

/// A semantic version `v1.33.0[-rc.1][+build]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
}

impl Version {
    /// Parses `v1.33.0`, `1.33.0`, `v1.33.0-rc.1`, `v1.33.0+build` (upstream's `ParseSemantic`, with an optional `v`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().strip_prefix('v').unwrap_or(s.trim());
        let t = t.split('+').next().unwrap_or_default();
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, p.to_string()),
            None => (t, String::new()),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let num = |i: usize| -> Result<u64, String> {
            parts.get(i).and_then(|p| p.parse().ok()).ok_or_else(|| format!("could not parse {s:?} as version"))
        };
        if parts.len() != 3 {
            return Err(format!("could not parse {s:?} as version"));
        }
        Ok(Version { major: num(0)?, minor: num(1)?, patch: num(2)?, pre })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// SemVer precedence: a pre-release sorts before its release; pre-release identifiers compare numerically
    /// when both are numbers.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    let a: Vec<&str> = self.pre.split('.').collect();
                    let b: Vec<&str> = other.pre.split('.').collect();
                    for (x, y) in a.iter().zip(&b) {
                        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                            (Ok(m), Ok(n)) => m.cmp(&n),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            _ => x.cmp(y),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    a.len().cmp(&b.len())
                }
            }
        })
    }
}

/// What the policies found (upstream's `VersionSkewPolicyErrors`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SkewErrors {
    pub mandatory: Vec<String>,
    pub skippable: Vec<String>,
}

impl SkewErrors {
    pub fn is_empty(&self) -> bool {
        self.mandatory.is_empty() && self.skippable.is_empty()
    }
}

/// The versions the policies look at.
pub struct Versions<'a> {
    pub cluster: &'a Version,
    pub kubeadm: &'a Version,
    /// The kubelets' versions; None when they could not be read (a skippable error).
    pub kubelets: Option<&'a [String]>,
}

/// Upstream's `EnforceVersionPolicies`.
pub fn enforce(v: &Versions<'_>, new_str: &str, new: &Version, allow_experimental: bool, allow_rc: bool) -> SkewErrors {
    let mut e = SkewErrors::default();
    if v.kubelets.is_none() {
        e.skippable.push("Unable to fetch kubelet version".into());
    }
    let minimum = Version::parse(MINIMUM_CONTROL_PLANE_VERSION).expect("constant");
    if *new < minimum {
        e.mandatory.push(format!(
            "Specified version to upgrade to {new_str:?} is equal to or lower than the minimum supported version {:?}. Please specify a higher version to upgrade to",
            v.cluster.to_string()
        ));
    }
    let released = new.pre.is_empty();
    let mut push = |mandatory: bool, msg: String| {
        if mandatory { e.mandatory.push(msg) } else { e.skippable.push(msg) }
    };
    if new.minor > v.cluster.minor + MAXIMUM_ALLOWED_MINOR_VERSION_UPGRADE_SKEW {
        push(
            released,
            format!(
                "Specified version to upgrade to {new_str:?} is too high; kubeadm can upgrade only {MAXIMUM_ALLOWED_MINOR_VERSION_UPGRADE_SKEW} minor version at a time"
            ),
        );
    }
    if new.minor + MAXIMUM_ALLOWED_MINOR_VERSION_DOWNGRADE_SKEW < v.cluster.minor {
        push(
            released,
            format!(
                "Specified version to downgrade to {new_str:?} is too low; kubeadm can downgrade only {MAXIMUM_ALLOWED_MINOR_VERSION_DOWNGRADE_SKEW} minor version at a time"
            ),
        );
    }
    if v.kubeadm < new && (new.major, new.minor) > (v.kubeadm.major, v.kubeadm.minor) {
        push(
            released,
            format!(
                "Specified version to upgrade to {new_str:?} is at least one minor release higher than the kubeadm minor release ({} > {}). Such an upgrade is not supported",
                new.minor, v.kubeadm.minor
            ),
        );
    }
    if (v.kubeadm.major, v.kubeadm.minor) > (new.major, new.minor) {
        e.skippable.push(format!(
            "Kubeadm version {} can only be used to upgrade to Kubernetes version {}.{}",
            v.kubeadm, v.kubeadm.major, v.kubeadm.minor
        ));
    }
    let allowed = new.pre.is_empty() || allow_experimental || (new.pre.starts_with("rc") && allow_rc);
    if !allowed {
        e.skippable.push(format!(
            "Specified version to upgrade to {new_str:?} is an unstable version and such upgrades weren't allowed via setting the --allow-*-upgrades flags"
        ));
    }
    if let Some(kubelets) = v.kubelets {
        let mut too_old = Vec::new();
        for s in kubelets {
            match Version::parse(s) {
                Ok(k) if new.minor > k.minor + MAXIMUM_ALLOWED_MINOR_VERSION_KUBELET_SKEW => too_old.push(s.clone()),
                Ok(_) => {}
                Err(_) => {
                    e.skippable.push(format!("couldn't parse kubelet version {s}"));
                }
            }
        }
        if !too_old.is_empty() {
            too_old.sort();
            too_old.dedup();
            e.skippable.push(format!(
                "There are kubelets in this cluster that are too old that have these versions [{}]",
                too_old.join(" ")
            ));
        }
    }
    e
}

/// Upstream's `FormatErrMsg`: one `\t- <error>` line per error.
pub fn format_errors(errs: &[String]) -> String {
    errs.iter().map(|e| format!("\t- {e}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cluster: &str, kubeadm: &str, kubelets: &[&str], new: &str, exp: bool, rc: bool) -> SkewErrors {
        let kubelets: Vec<String> = kubelets.iter().map(|s| s.to_string()).collect();
        let (c, k, n) =
            (Version::parse(cluster).unwrap(), Version::parse(kubeadm).unwrap(), Version::parse(new).unwrap());
        enforce(&Versions { cluster: &c, kubeadm: &k, kubelets: Some(&kubelets) }, new, &n, exp, rc)
    }

    #[test]
    fn versions_parse_and_order_as_semver() {
        let v = Version::parse("v1.33.0-rc.1").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre.as_str()), (1, 33, 0, "rc.1"));
        assert_eq!(Version::parse("1.33.2+abc").unwrap().to_string(), "v1.33.2");
        assert!(Version::parse("v1.33").is_err() && Version::parse("stable").is_err());
        assert!(Version::parse("v1.33.0-rc.1").unwrap() < Version::parse("v1.33.0").unwrap());
        assert!(Version::parse("v1.33.0-alpha.2").unwrap() < Version::parse("v1.33.0-alpha.10").unwrap());
        assert!(Version::parse("v1.33.0-alpha.2").unwrap() < Version::parse("v1.33.0-beta.0").unwrap());
        assert!(Version::parse("v1.32.9").unwrap() < Version::parse("v1.33.0").unwrap());
    }

    // The cases of upstream's policy_test.go that apply to a v1.33 kubeadm.
    #[test]
    fn minor_upgrade_and_patch_upgrades_pass() {
        assert!(check("v1.32.3", "v1.33.0", &["v1.32.3"], "v1.33.0", false, false).is_empty());
        assert!(check("v1.33.0", "v1.33.0", &["v1.33.0"], "v1.33.0", false, false).is_empty());
        // Our difference: a newer patch of kubeadm's own minor (a retagged build) needs no --force.
        assert!(check("v1.33.0", "v1.33.0", &["v1.33.0"], "v1.33.1", false, false).is_empty());
    }

    #[test]
    fn skipping_a_minor_version_is_mandatory_for_releases_and_skippable_for_unstable_ones() {
        let e = check("v1.32.0", "v1.34.0", &["v1.32.0"], "v1.34.0", false, false);
        assert_eq!(
            e.mandatory,
            [
                "Specified version to upgrade to \"v1.34.0\" is too high; kubeadm can upgrade only 1 minor version at a time"
            ]
        );
        assert_eq!(
            e.skippable,
            ["There are kubelets in this cluster that are too old that have these versions [v1.32.0]"]
        );
        let e = check("v1.32.0", "v1.34.0-alpha.1", &["v1.33.0"], "v1.34.0-alpha.1", true, false);
        assert!(e.mandatory.is_empty());
        assert_eq!(e.skippable.len(), 1);
    }

    #[test]
    fn newer_minor_than_kubeadm_and_too_low_and_downgrades_are_refused() {
        let e = check("v1.33.0", "v1.33.0", &["v1.33.0"], "v1.34.0", false, false);
        assert_eq!(
            e.mandatory,
            [
                "Specified version to upgrade to \"v1.34.0\" is at least one minor release higher than the kubeadm minor release (34 > 33). Such an upgrade is not supported"
            ]
        );
        let e = check("v1.33.0", "v1.33.0", &["v1.33.0"], "v1.31.0", false, false);
        assert!(e.mandatory.iter().any(|m| m.contains("is equal to or lower than the minimum supported version")));
        assert!(e.mandatory.iter().any(|m| m.contains("is too low; kubeadm can downgrade only 1 minor version")));
        // A one-minor downgrade is only skippable (--force).
        let e = check("v1.33.0", "v1.33.0", &["v1.33.0"], "v1.32.5", false, false);
        assert!(e.mandatory.is_empty());
        assert_eq!(e.skippable, ["Kubeadm version v1.33.0 can only be used to upgrade to Kubernetes version 1.33"]);
    }

    #[test]
    fn unstable_versions_need_the_allow_flags() {
        let e = check("v1.32.0", "v1.33.0", &["v1.32.0"], "v1.33.0-rc.1", false, false);
        assert_eq!(
            e.skippable,
            [
                "Specified version to upgrade to \"v1.33.0-rc.1\" is an unstable version and such upgrades weren't allowed via setting the --allow-*-upgrades flags"
            ]
        );
        assert!(check("v1.32.0", "v1.33.0", &["v1.32.0"], "v1.33.0-rc.1", false, true).is_empty());
        assert!(!check("v1.32.0", "v1.33.0", &["v1.32.0"], "v1.33.0-beta.1", false, true).is_empty());
        assert!(check("v1.32.0", "v1.33.0", &["v1.32.0"], "v1.33.0-beta.1", true, false).is_empty());
    }
}
