//! A readable line diff of two canonical forms ([`super::canonical`]): the changed lines,
//! a little context, and every changed line's headers (its resource, scope and metric
//! lines, found by indentation), so each difference can be read on its own.

/// Lines of context shown around each change.
const CONTEXT: usize = 2;

/// Largest `expected.len() * actual.len()` diffed line by line; past it (a completely
/// different output), the lines missing on each side are listed without alignment.
const MAX_CELLS: usize = 16_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Same,
    OnlyExpected,
    OnlyActual,
}

/// `None` when equal; otherwise the diff, `-` for lines only in `expected`, `+` for lines
/// only in `actual`, labelled with the two names.
pub fn diff(
    expected_name: &str,
    expected: &[String],
    actual_name: &str,
    actual: &[String],
) -> Option<String> {
    if expected == actual {
        return None;
    }
    let ops = if expected.len().saturating_mul(actual.len()) <= MAX_CELLS {
        align(expected, actual)
    } else {
        unaligned(expected, actual)
    };
    let only_expected = ops
        .iter()
        .filter(|(tag, _)| *tag == Tag::OnlyExpected)
        .count();
    let only_actual = ops
        .iter()
        .filter(|(tag, _)| *tag == Tag::OnlyActual)
        .count();
    let mut shown = vec![false; ops.len()];
    for (index, (tag, line)) in ops.iter().enumerate() {
        if *tag == Tag::Same {
            continue;
        }
        let from = index.saturating_sub(CONTEXT);
        let to = (index + CONTEXT + 1).min(ops.len());
        shown[from..to].iter_mut().for_each(|flag| *flag = true);
        // The headers of this line: the nearest earlier lines of smaller indent that are
        // on its side (or on both).
        let mut depth = indent(line);
        for earlier in (0..index).rev() {
            if depth == 0 {
                break;
            }
            let (earlier_tag, earlier_line) = ops[earlier];
            if (earlier_tag == Tag::Same || earlier_tag == *tag) && indent(earlier_line) < depth {
                shown[earlier] = true;
                depth = indent(earlier_line);
            }
        }
    }
    let mut text = format!(
        "--- {expected_name} ({} lines; {only_expected} only here, marked -)\n+++ {actual_name} ({} lines; {only_actual} only here, marked +)\n",
        expected.len(),
        actual.len()
    );
    let mut skipped = false;
    for ((tag, line), shown) in ops.iter().zip(shown) {
        if !shown {
            skipped = true;
            continue;
        }
        if skipped {
            text.push_str("  ...\n");
            skipped = false;
        }
        let marker = match tag {
            Tag::Same => ' ',
            Tag::OnlyExpected => '-',
            Tag::OnlyActual => '+',
        };
        text.push(marker);
        text.push(' ');
        text.push_str(line);
        text.push('\n');
    }
    if skipped {
        text.push_str("  ...\n");
    }
    Some(text)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The longest-common-subsequence alignment of the two line lists.
fn align<'a>(expected: &'a [String], actual: &'a [String]) -> Vec<(Tag, &'a str)> {
    let (n, m) = (expected.len(), actual.len());
    // lengths[i][j]: LCS length of expected[i..] and actual[j..].
    let mut lengths = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[at(i, j)] = if expected[i] == actual[j] {
                lengths[at(i + 1, j + 1)] + 1
            } else {
                lengths[at(i + 1, j)].max(lengths[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            ops.push((Tag::Same, expected[i].as_str()));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lengths[at(i + 1, j)] >= lengths[at(i, j + 1)]) {
            ops.push((Tag::OnlyExpected, expected[i].as_str()));
            i += 1;
        } else {
            ops.push((Tag::OnlyActual, actual[j].as_str()));
            j += 1;
        }
    }
    ops
}

/// Lines of each side that the other lacks (as multisets), without context.
fn unaligned<'a>(expected: &'a [String], actual: &'a [String]) -> Vec<(Tag, &'a str)> {
    let mut counts = std::collections::HashMap::<&str, i64>::new();
    actual
        .iter()
        .for_each(|line| *counts.entry(line).or_default() += 1);
    let mut ops = Vec::new();
    for line in expected {
        let count = counts.entry(line).or_default();
        if *count > 0 {
            *count -= 1;
        } else {
            ops.push((Tag::OnlyExpected, line.as_str()));
        }
    }
    let mut counts = std::collections::HashMap::<&str, i64>::new();
    expected
        .iter()
        .for_each(|line| *counts.entry(line).or_default() += 1);
    for line in actual {
        let count = counts.entry(line).or_default();
        if *count > 0 {
            *count -= 1;
        } else {
            ops.push((Tag::OnlyActual, line.as_str()));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn equal_inputs_have_no_diff() {
        let same = lines("a\n  b");
        assert_eq!(diff("x", &same, "y", &same), None);
    }

    #[test]
    fn a_changed_line_shows_both_versions_and_its_headers() {
        let mut expected = vec![
            "resource r1".to_string(),
            "  scope s".to_string(),
            "    metric m".to_string(),
        ];
        expected.extend((0..10).map(|i| format!("      point {i}")));
        let mut actual = expected.clone();
        actual[12] = "      point 9 changed".to_string();
        let text = diff("collector", &expected, "oxcol", &actual).expect("they differ");
        assert!(
            text.contains("-       point 9\n+       point 9 changed\n"),
            "{text}"
        );
        // Headers far above the change are shown; unchanged points far away are not.
        assert!(
            text.contains("  resource r1\n")
                && text.contains("  scope s\n")
                && text.contains("    metric m\n"),
            "{text}"
        );
        assert!(
            !text.contains("point 2\n") && text.contains("  ...\n"),
            "{text}"
        );
        assert!(
            text.starts_with(
                "--- collector (13 lines; 1 only here, marked -)\n+++ oxcol (13 lines; 1 only here"
            ),
            "{text}"
        );
    }

    #[test]
    fn missing_and_extra_lines_are_marked_by_side() {
        let expected = lines("a\nb\nc");
        let actual = lines("a\nc\nd");
        let text = diff("e", &expected, "a", &actual).expect("they differ");
        assert!(
            text.contains("- b\n") && text.contains("+ d\n") && text.contains("  a\n"),
            "{text}"
        );
    }

    #[test]
    fn unaligned_lists_multiset_differences() {
        let (expected, actual) = (lines("a\na\nb"), lines("a\nc"));
        let ops = unaligned(&expected, &actual);
        assert_eq!(
            ops,
            vec![
                (Tag::OnlyExpected, "a"),
                (Tag::OnlyExpected, "b"),
                (Tag::OnlyActual, "c")
            ]
        );
    }
}
