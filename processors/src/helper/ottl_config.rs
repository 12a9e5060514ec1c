//! Config pieces the OTTL processors (`filter`, `transform`) share: which contexts a
//! signal's statements and conditions may use, and the list entries that are either a
//! flat string (context inferred from its paths) or a group with its own keys.

use oxcol_core::Signal;
use oxcol_ottl::config::{ConfigProblem, PathSegment, key};
use oxcol_ottl::{ContextKind, infer_context_in};
use serde::Deserialize;

/// The contexts a signal's statements and conditions may use.
pub fn contexts_of(signal: Signal) -> &'static [ContextKind] {
    match signal {
        Signal::Traces => &[
            ContextKind::Resource,
            ContextKind::Scope,
            ContextKind::Span,
            ContextKind::SpanEvent,
        ],
        Signal::Metrics => &[
            ContextKind::Resource,
            ContextKind::Scope,
            ContextKind::Metric,
            ContextKind::DataPoint,
        ],
        Signal::Logs => &[ContextKind::Resource, ContextKind::Scope, ContextKind::Log],
    }
}

/// The names of `contexts_of(signal)`, comma-separated, for error messages.
pub fn context_names(signal: Signal) -> String {
    contexts_of(signal)
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The context of the group at `at` in `list_key`: the one it names, or else the one
/// inferred from its `texts` (what they are: `"statements"`, `"conditions"`). None, with
/// the problem recorded, when it names no context of `signal` or none can be inferred.
pub fn group_context(
    named: Option<&str>,
    texts: &[&str],
    what: &str,
    list_key: &str,
    signal: Signal,
    at: &[PathSegment],
    problems: &mut Vec<ConfigProblem>,
) -> Option<ContextKind> {
    let allowed = contexts_of(signal);
    let problem = match named {
        Some(name) => match ContextKind::parse(name).filter(|c| allowed.contains(c)) {
            Some(c) => return Some(c),
            None => {
                let mut path = at.to_vec();
                path.push(key("context"));
                let names = context_names(signal);
                ConfigProblem::at(
                    path,
                    format!("unknown context {name:?} for {list_key}: use one of {names}"),
                )
            }
        },
        None => match infer_context_in(texts, allowed) {
            Ok(c) if allowed.contains(&c) => return Some(c),
            Ok(c) => ConfigProblem::at(
                at.to_vec(),
                format!(
                    "the {what} refer to the {} context, which {list_key} cannot use (use one of {})",
                    c.name(),
                    context_names(signal)
                ),
            ),
            Err(e) => ConfigProblem::at(at.to_vec(), format!("no context given and {}", e.message)),
        },
    };
    problems.push(problem);
    None
}

/// A group of a `*_statements` or `*_conditions` list; `EXPECTING` says what a list
/// entry may be, for the error on anything else.
pub trait EntryGroup {
    const EXPECTING: &'static str;
}

/// One entry of a `*_statements` or `*_conditions` list: a string whose context is
/// inferred from its paths, or a group.
#[derive(Clone, Debug, PartialEq)]
pub enum FlatOrGroup<G> {
    Flat(String),
    Group(G),
}

impl<'de, G: Deserialize<'de> + EntryGroup> Deserialize<'de> for FlatOrGroup<G> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<G>(std::marker::PhantomData<G>);
        impl<'de, G: Deserialize<'de> + EntryGroup> serde::de::Visitor<'de> for Visit<G> {
            type Value = FlatOrGroup<G>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(G::EXPECTING)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FlatOrGroup<G>, E> {
                Ok(FlatOrGroup::Flat(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<FlatOrGroup<G>, A::Error> {
                G::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(FlatOrGroup::Group)
            }
        }
        deserializer.deserialize_any(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct G {
        context: String,
    }

    impl EntryGroup for G {
        const EXPECTING: &'static str = "a string or a group {context}";
    }

    #[test]
    fn entries_are_strings_or_groups() {
        let entries: Vec<FlatOrGroup<G>> =
            serde_json::from_str(r#"["a == 1", {"context": "span"}]"#).unwrap();
        assert_eq!(
            entries,
            [
                FlatOrGroup::Flat("a == 1".into()),
                FlatOrGroup::Group(G {
                    context: "span".into()
                })
            ]
        );
        let error = serde_json::from_str::<Vec<FlatOrGroup<G>>>("[1]").unwrap_err();
        assert!(
            error.to_string().contains("a string or a group {context}"),
            "{error}"
        );
        assert!(serde_json::from_str::<Vec<FlatOrGroup<G>>>(r#"[{"x": 1}]"#).is_err());
    }

    #[test]
    fn every_signal_allows_resource_and_scope() {
        for signal in Signal::ALL {
            assert_eq!(
                &contexts_of(signal)[..2],
                &[ContextKind::Resource, ContextKind::Scope]
            );
        }
        assert_eq!(context_names(Signal::Logs), "resource, scope, log");
    }
}
