//! The Collector's device filters (`include`/`exclude` of the disk and network scrapers):
//! `{devices: [...], match_type: strict|regexp}`. `regexp` matches anywhere in the name
//! (Go's `MatchString`), `strict` the whole name.

use regex::Regex;
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    pub devices: Vec<String>,
    /// `strict` or `regexp`; required when `devices` is set (as in the Collector).
    pub match_type: String,
}

impl MatchConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.match_type.as_str() {
            "strict" => {}
            "regexp" => {
                for device in &self.devices {
                    if let Err(e) = Regex::new(device) {
                        problems.push(format!(
                            "devices: {device:?} is not a valid regular expression: {e}"
                        ));
                    }
                }
            }
            "" if self.devices.is_empty() => {}
            other => problems.push(format!(
                "match_type {other:?} is not valid; use strict or regexp"
            )),
        }
        problems
    }
}

enum Set {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Set {
    fn new(config: &MatchConfig) -> Result<Option<Set>, String> {
        if config.devices.is_empty() {
            return Ok(None);
        }
        match config.match_type.as_str() {
            "strict" => Ok(Some(Set::Strict(config.devices.clone()))),
            "regexp" => config
                .devices
                .iter()
                .map(|d| {
                    Regex::new(d).map_err(|e| {
                        format!("devices: {d:?} is not a valid regular expression: {e}")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|r| Some(Set::Regexp(r))),
            other => Err(format!(
                "match_type {other:?} is not valid; use strict or regexp"
            )),
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Set::Strict(names) => names.iter().any(|n| n == name),
            Set::Regexp(res) => res.iter().any(|r| r.is_match(name)),
        }
    }
}

/// Include and exclude together: a device passes when include is empty or matches it, and
/// exclude does not.
pub struct DeviceFilter {
    include: Option<Set>,
    exclude: Option<Set>,
}

impl DeviceFilter {
    pub fn new(
        include: &Option<MatchConfig>,
        exclude: &Option<MatchConfig>,
    ) -> Result<DeviceFilter, String> {
        let set =
            |m: &Option<MatchConfig>| m.as_ref().map(Set::new).transpose().map(Option::flatten);
        Ok(DeviceFilter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    pub fn passes(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.matches(name))
            && !self.exclude.as_ref().is_some_and(|s| s.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(devices: &[&str], match_type: &str) -> Option<MatchConfig> {
        Some(MatchConfig {
            devices: devices.iter().map(|d| d.to_string()).collect(),
            match_type: match_type.to_string(),
        })
    }

    #[test]
    fn strict_is_whole_name_and_regexp_is_anywhere() {
        let f = DeviceFilter::new(&config(&["eth0"], "strict"), &None).unwrap();
        assert!(f.passes("eth0"));
        assert!(!f.passes("eth01"));
        let f = DeviceFilter::new(&None, &config(&["^lo$", "veth"], "regexp")).unwrap();
        assert!(!f.passes("lo"));
        assert!(!f.passes("veth12ab"));
        assert!(f.passes("eth0"));
        assert!(f.passes("lo0"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let f =
            DeviceFilter::new(&config(&["^sd"], "regexp"), &config(&["sdb"], "strict")).unwrap();
        assert!(f.passes("sda"));
        assert!(!f.passes("sdb"));
        assert!(!f.passes("vda"));
    }

    #[test]
    fn problems_name_the_bad_value() {
        assert!(config(&["eth0"], "").unwrap().problems()[0].contains("strict or regexp"));
        assert!(config(&["("], "regexp").unwrap().problems()[0].contains("\"(\""));
        assert!(MatchConfig::default().problems().is_empty());
    }
}
