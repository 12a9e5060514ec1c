//! Helpers for components whose config holds OTTL: problems that point at the YAML node of
//! one statement (and the position inside it), and the mapping of a position inside a
//! one-line YAML scalar to its column in the file.

/// One step of the way from a component's config root to a YAML node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    Key(String),
    Index(usize),
}

/// A problem in an OTTL-bearing config, located at a node of the config.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigProblem {
    /// Where in the component's config (e.g. `trace_statements[0].statements[2]`).
    pub path: Vec<PathSegment>,
    /// The statement or condition text, when the problem is in one.
    pub text: Option<String>,
    /// 0-based character offset inside `text`.
    pub offset: Option<usize>,
    pub message: String,
}

impl ConfigProblem {
    pub fn at(path: Vec<PathSegment>, message: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            path,
            text: None,
            offset: None,
            message: message.into(),
        }
    }

    /// A statement or condition that does not parse.
    pub fn parse(
        path: Vec<PathSegment>,
        kind: &str,
        text: &str,
        error: &crate::ParseError,
    ) -> ConfigProblem {
        ConfigProblem {
            path,
            text: Some(format!("{kind} {text:?}")),
            offset: Some(error.offset),
            message: error.message.clone(),
        }
    }

    /// `trace_statements[0].statements[2]`
    pub fn path_text(&self) -> String {
        let mut out = String::new();
        for segment in &self.path {
            match segment {
                PathSegment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }
}

impl std::fmt::Display for ConfigProblem {
    /// `statement "set(x, )": at position 7: expected an argument`, or
    /// `trace_statements[0].context: ...` for problems outside a statement.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.text, self.offset) {
            (Some(text), Some(offset)) => {
                write!(f, "{text}: at position {offset}: {}", self.message)
            }
            (Some(text), None) => write!(f, "{text}: {}", self.message),
            _ => write!(f, "{}: {}", self.path_text(), self.message),
        }
    }
}

pub fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_string())
}

/// The 1-based column of character `offset` of a scalar's value that starts at 1-based
/// `column` of `line` (the source line the YAML parser placed it at), when the whole value
/// is on that line. Handles plain, double-quoted (escapes) and single-quoted (`''`)
/// scalars; None for block scalars, values continued on the next line, or a line that
/// does not hold `value` at `column`.
pub fn scalar_column(line: &str, column: usize, value: &str, offset: usize) -> Option<usize> {
    let rest: Vec<char> = line.chars().skip(column.checked_sub(1)?).collect();
    let value_chars: Vec<char> = value.chars().collect();
    if offset > value_chars.len() {
        return None;
    }
    match rest.first() {
        Some('"') => {
            // Walk the escapes; the decoded char count reaches `offset` at source index i.
            let mut i = 1;
            let mut decoded = 0;
            loop {
                if decoded == offset {
                    // The value must close on this line for the mapping to be trusted.
                    return if closes(&rest, i, '"') {
                        Some(column + i)
                    } else {
                        None
                    };
                }
                match rest.get(i)? {
                    '"' => return None,
                    '\\' => {
                        i += match rest.get(i + 1)? {
                            'x' => 4,
                            'u' => 6,
                            'U' => 10,
                            _ => 2,
                        };
                    }
                    _ => i += 1,
                }
                decoded += 1;
            }
        }
        Some('\'') => {
            let mut i = 1;
            let mut decoded = 0;
            loop {
                if decoded == offset {
                    return if closes(&rest, i, '\'') {
                        Some(column + i)
                    } else {
                        None
                    };
                }
                match (rest.get(i)?, rest.get(i + 1)) {
                    ('\'', Some('\'')) => i += 2,
                    ('\'', _) => return None,
                    _ => i += 1,
                }
                decoded += 1;
            }
        }
        Some('|') | Some('>') | None => None,
        Some(_) => {
            let on_line: String = rest.iter().collect();
            if on_line.starts_with(value) {
                Some(column + offset)
            } else {
                None
            }
        }
    }
}

/// Whether a quoted scalar starting before `from` closes on this line.
fn closes(rest: &[char], from: usize, quote: char) -> bool {
    let mut i = from;
    while i < rest.len() {
        if quote == '"' && rest[i] == '\\' {
            i += 2;
            continue;
        }
        if rest[i] == quote {
            if quote == '\'' && rest.get(i + 1) == Some(&'\'') {
                i += 2;
                continue;
            }
            return true;
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_of_plain_and_quoted_scalars() {
        // plain: "      - set(x, )" with the scalar at column 9.
        assert_eq!(
            scalar_column("      - set(x, )", 9, "set(x, )", 7),
            Some(16)
        );
        // double-quoted with escapes: each \" is two source chars for one value char.
        let line = r#"      - "set(attributes[\"x\"], )""#;
        let value = r#"set(attributes["x"], )"#;
        let col = scalar_column(line, 9, value, 21).unwrap();
        assert_eq!(line.chars().nth(col - 1), Some(')'));
        // single-quoted with '' escapes.
        let line = "  - 'set(name, ''a'') where'";
        let col = scalar_column(line, 5, "set(name, 'a') where", 15).unwrap();
        assert_eq!(line.chars().nth(col - 1), Some('w'));
        // Block scalars and values continued on the next line are not mapped.
        assert_eq!(scalar_column("  - |", 5, "set(x, 1)", 3), None);
        assert_eq!(scalar_column("  - \"set(x,", 5, "set(x, 1)", 3), None);
        assert_eq!(scalar_column("  - set(x,", 5, "set(x, 1)", 3), None);
    }

    #[test]
    fn problem_display() {
        let e = crate::parse_statement("set(name, )", crate::ContextKind::Span).unwrap_err();
        let p = ConfigProblem::parse(
            vec![key("trace_statements"), PathSegment::Index(0)],
            "statement",
            "set(name, )",
            &e,
        );
        assert_eq!(
            p.to_string(),
            "statement \"set(name, )\": at position 10: expected an argument"
        );
        let p = ConfigProblem::at(
            vec![
                key("trace_statements"),
                PathSegment::Index(1),
                key("context"),
            ],
            "unknown context",
        );
        assert_eq!(
            p.to_string(),
            "trace_statements[1].context: unknown context"
        );
    }
}
