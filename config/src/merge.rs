//! Deep merge of config trees and `--set path=value` overrides, with the Collector's
//! confmap semantics: maps merge key by key, anything else is replaced by the later value.
//!
//! A `--set` becomes a one-path tree that is merged last, so it follows exactly the same
//! rules as a later `--config` file.

use std::sync::Arc;

use crate::parse::parse_document;
use crate::{ConfigError, Location, Node, Value};

/// Merges `overlay` into `base`. Maps merge recursively and keep the location of the map
/// written first; a scalar or sequence from `overlay` replaces what `base` had, with its
/// own location.
pub(crate) fn merge(base: &mut Node, overlay: Node) {
    let Node { value, location } = overlay;
    match (&mut base.value, value) {
        (Value::Map(base_entries), Value::Map(overlay_entries)) => {
            for (key, value) in overlay_entries {
                let existing = base_entries
                    .iter_mut()
                    .find(|(candidate, _)| candidate.scalar_text() == key.scalar_text());
                match existing {
                    Some((_, slot)) => merge(slot, value),
                    None => base_entries.push((key, value)),
                }
            }
        }
        (_, value) => *base = Node { value, location },
    }
}

/// Turns one `--set path=value` flag into a tree to merge. `ordinal` is the flag's
/// 1-based position, used as the "line" of its locations.
///
/// Path segments are separated by `::` when the path contains `::`, otherwise by `.`;
/// `/` is never a separator, so `exporters.otlp/backend.endpoint` works. The value is
/// YAML: `4317` is an integer, `"4317"` a string, `[a, b]` a list.
pub(crate) fn parse_set(set: &str, ordinal: usize) -> Result<Node, ConfigError> {
    let source: Arc<str> = Arc::from("--set");
    let flag_location = Location::new(source.clone(), ordinal, 1);
    let Some((path, value_text)) = set.split_once('=') else {
        return Err(ConfigError::at(
            &flag_location,
            format!(
                "--set '{set}' has no '=': write it as path=value, e.g. exporters::debug::verbosity=detailed"
            ),
        ));
    };
    if path.is_empty() {
        return Err(ConfigError::at(
            &flag_location,
            format!("--set '{set}' has an empty path before '='"),
        ));
    }
    let separator = if path.contains("::") { "::" } else { "." };
    let mut segments = Vec::new();
    let mut offset = 0;
    for segment in path.split(separator) {
        let location = Location::new(source.clone(), ordinal, offset + 1);
        if segment.is_empty() {
            return Err(ConfigError::at(
                &location,
                format!("--set '{set}' has an empty path segment (separators are '{separator}')"),
            ));
        }
        segments.push((segment, location));
        offset += segment.chars().count() + separator.len();
    }
    let value_column = path.chars().count() + 1;
    let mut tree = parse_set_value(value_text, &source, ordinal, value_column);
    for (segment, location) in segments.into_iter().rev() {
        let key = Node::new(Value::String(segment.to_owned()), location.clone());
        tree = Node::new(Value::Map(vec![(key, tree)]), location);
    }
    Ok(tree)
}

/// Parses the value of a `--set` as YAML. A block map or list (`a: b`, `- x`) is not what
/// anyone means on a command line, and text that is not valid YAML is still a fine string,
/// so both are taken literally.
fn parse_set_value(text: &str, source: &Arc<str>, ordinal: usize, column_offset: usize) -> Node {
    let literal = || {
        Node::new(
            Value::String(text.to_owned()),
            Location::new(source.clone(), ordinal, column_offset + 1),
        )
    };
    let (root, errors) = parse_document(text, source);
    let Some(mut root) = root.filter(|_| errors.is_empty()) else {
        return literal();
    };
    let is_flow = text.trim_start().starts_with(['[', '{']);
    if matches!(root.value, Value::Map(_) | Value::Seq(_)) && !is_flow {
        return literal();
    }
    relocate(&mut root, &|location| {
        location.column += column_offset;
        location.line = ordinal;
    });
    if text.is_empty() {
        root.location.column = column_offset + 1;
    }
    root
}

/// Applies `change` to the location of every node in the tree, keys included.
pub(crate) fn relocate(node: &mut Node, change: &dyn Fn(&mut Location)) {
    change(&mut node.location);
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| relocate(item, change)),
        Value::Map(entries) => entries.iter_mut().for_each(|(key, value)| {
            relocate(key, change);
            relocate(value, change);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, load};

    fn text(name: &str, text: &str) -> Source {
        Source::Text {
            name: name.into(),
            text: text.into(),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn files_merge_maps_replace_sequences_and_override_scalars() {
        let first = text(
            "a.yaml",
            "exporters:\n  debug:\n    verbosity: basic\n  otlp:\n    endpoint: x:4317\nservice:\n  extensions: [health_check, pprof]\n",
        );
        let second = text(
            "b.yaml",
            "exporters:\n  debug:\n    verbosity: detailed\n    sampling_initial: 5\nservice:\n  extensions: [health_check]\n",
        );
        let root = load(&[first, second], &[], &no_env).unwrap();
        let exporters = root.get("exporters").unwrap();
        let debug = exporters.get("debug").unwrap();
        assert_eq!(debug.get("verbosity").unwrap().as_str(), Some("detailed"));
        assert_eq!(debug.get("sampling_initial").unwrap().as_i64(), Some(5));
        // Untouched parts of the first file survive, with their own location.
        let endpoint = exporters.get("otlp").unwrap().get("endpoint").unwrap();
        assert_eq!(endpoint.location, Location::new("a.yaml", 5, 15));
        // The overriding scalar comes from the second file.
        assert_eq!(
            debug.get("verbosity").unwrap().location,
            Location::new("b.yaml", 3, 16)
        );
        assert_eq!(
            debug
                .get("sampling_initial")
                .unwrap()
                .location
                .source
                .as_ref(),
            "b.yaml"
        );
        let extensions = root
            .get("service")
            .unwrap()
            .get("extensions")
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(extensions.len(), 1, "sequences are replaced, not appended");
        assert_eq!(extensions[0].location.source.as_ref(), "b.yaml");
    }

    #[test]
    fn null_overrides_and_map_replaces_null() {
        let first = text(
            "a.yaml",
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n",
        );
        let second = text(
            "b.yaml",
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: y\n",
        );
        let root = load(&[first, second], &[], &no_env).unwrap();
        let grpc = root
            .get("receivers")
            .unwrap()
            .get("otlp")
            .unwrap()
            .get("protocols")
            .unwrap()
            .get("grpc")
            .unwrap();
        assert_eq!(grpc.get("endpoint").unwrap().as_str(), Some("y"));
    }

    #[test]
    fn set_with_dots_and_ids_containing_slash() {
        let base = text(
            "a.yaml",
            "exporters:\n  otlp/backend:\n    endpoint: old\n    compression: gzip\n",
        );
        let sets = vec!["exporters.otlp/backend.endpoint=new:4317".to_owned()];
        let root = load(&[base], &sets, &no_env).unwrap();
        let backend = root.get("exporters").unwrap().get("otlp/backend").unwrap();
        let endpoint = backend.get("endpoint").unwrap();
        assert_eq!(endpoint.as_str(), Some("new:4317"));
        assert_eq!(endpoint.location, Location::new("--set", 1, 33));
        assert_eq!(backend.get("compression").unwrap().as_str(), Some("gzip"));
    }

    #[test]
    fn set_with_double_colons_creates_intermediate_maps_and_types_values() {
        let base = text(
            "a.yaml",
            "receivers:\n  otlp/2:\n    protocols:\n      grpc:\n",
        );
        let sets = vec![
            "receivers::otlp/2::protocols::grpc::max_recv_msg_size_mib=16".to_owned(),
            "processors::batch::send_batch_size=\"8192\"".to_owned(),
            "service::pipelines::metrics::receivers=[otlp/2, prometheus]".to_owned(),
            "exporters::debug::host.name=a.b".to_owned(),
        ];
        let root = load(&[base], &sets, &no_env).unwrap();
        let grpc = root
            .get("receivers")
            .unwrap()
            .get("otlp/2")
            .unwrap()
            .get("protocols")
            .unwrap()
            .get("grpc")
            .unwrap();
        assert_eq!(
            grpc.get("max_recv_msg_size_mib").unwrap().as_i64(),
            Some(16)
        );
        let batch = root.get("processors").unwrap().get("batch").unwrap();
        assert_eq!(batch.get("send_batch_size").unwrap().as_str(), Some("8192"));
        assert_eq!(
            batch.key_location("send_batch_size").unwrap(),
            &Location::new("--set", 2, 20)
        );
        let receivers = root
            .get("service")
            .unwrap()
            .get("pipelines")
            .unwrap()
            .get("metrics")
            .unwrap()
            .get("receivers")
            .unwrap();
        let names: Vec<_> = receivers
            .as_seq()
            .unwrap()
            .iter()
            .map(|node| node.as_str().unwrap())
            .collect();
        assert_eq!(names, ["otlp/2", "prometheus"]);
        // With `::` as separator, dots stay inside the key.
        assert!(
            root.get("exporters")
                .unwrap()
                .get("debug")
                .unwrap()
                .get("host.name")
                .is_some()
        );
    }

    #[test]
    fn set_values_that_are_not_plain_yaml_stay_literal() {
        let sets = vec![
            "a.b=Bearer: abc".to_owned(),
            "a.c='unclosed".to_owned(),
            "a.d=".to_owned(),
        ];
        let root = load(&[], &sets, &no_env).unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(a.get("b").unwrap().as_str(), Some("Bearer: abc"));
        assert_eq!(a.get("c").unwrap().as_str(), Some("'unclosed"));
        assert!(a.get("d").unwrap().is_null());
    }

    #[test]
    fn malformed_sets_are_errors_and_all_reported() {
        let sets = vec![
            "novalue".to_owned(),
            "=x".to_owned(),
            "a..b=1".to_owned(),
            "ok.key=1".to_owned(),
        ];
        let errors = load(&[], &sets, &no_env).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].message.contains("has no '='"));
        assert_eq!(errors[0].location, Some(Location::new("--set", 1, 1)));
        assert!(errors[1].message.contains("empty path"));
        assert!(errors[2].message.contains("empty path segment"));
        assert_eq!(errors[2].location, Some(Location::new("--set", 3, 3)));
    }

    #[test]
    fn unreadable_file_names_path_and_os_error_and_other_files_still_checked() {
        let missing = Source::File("/nonexistent/oxcol/config.yaml".into());
        let broken = text("b.yaml", "a: 1\na: 2\n");
        let errors = load(&[missing, broken], &[], &no_env).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].location.is_none());
        assert!(
            errors[0].message.contains("/nonexistent/oxcol/config.yaml"),
            "{}",
            errors[0]
        );
        assert!(errors[0].message.contains("No such file"), "{}", errors[0]);
        assert_eq!(
            errors[1].to_string(),
            "b.yaml:2:1: duplicate key 'a' (first written at line 1, column 1)"
        );
    }

    #[test]
    fn root_must_be_a_map() {
        let errors = load(&[text("a.yaml", "- a\n- b\n")], &[], &no_env).unwrap_err();
        assert!(
            errors[0].message.contains("found a sequence"),
            "{}",
            errors[0]
        );
        let root = load(&[text("a.yaml", "# nothing yet\n")], &[], &no_env).unwrap();
        assert_eq!(root.map_entries().map(<[_]>::len), Some(0));
    }
}
