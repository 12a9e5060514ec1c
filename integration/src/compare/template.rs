//! Command-line and config templates of the systems under test: `{name}` placeholders and
//! shell-like word splitting (no shell is run).

/// Replaces every `{name}` in `template` by `lookup(name)`. `{{` and `}}` stand for literal
/// braces. An unknown name (lookup error), an unclosed `{` or a lone `}` is an error that
/// names the template.
pub fn substitute(
    template: &str,
    mut lookup: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!(
                "lone '}}' in template {template:?} (write '}}}}' for a brace)"
            ));
        } else {
            let Some(close) = tail.find('}') else {
                return Err(format!("unclosed '{{' in template {template:?}"));
            };
            let name = &tail[1..close];
            if name.is_empty() || name.contains('{') {
                return Err(format!(
                    "bad placeholder {{{name}}} in template {template:?}"
                ));
            }
            out.push_str(&lookup(name)?);
            rest = &tail[close + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a command line into words like a POSIX shell would, without expansions: blanks
/// separate words; '...' keeps everything literally; "..." keeps blanks and honours `\"`
/// and `\\`; a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed ' in {line:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(format!("unclosed \" in {line:?}")),
                        },
                        Some(c) => word.push(c),
                        None => return Err(format!("unclosed \" in {line:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(format!("trailing backslash in {line:?}")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Result<String, String> {
        match name {
            "grpc_port" => Ok("4317".into()),
            "sink_grpc" => Ok("127.0.0.1:9".into()),
            other => Err(format!("unknown placeholder {{{other}}}")),
        }
    }

    #[test]
    fn placeholders_are_replaced() {
        assert_eq!(
            substitute("--a 127.0.0.1:{grpc_port} --b http://{sink_grpc}/x", vars).unwrap(),
            "--a 127.0.0.1:4317 --b http://127.0.0.1:9/x"
        );
        assert_eq!(
            substitute("no placeholders", vars).unwrap(),
            "no placeholders"
        );
        assert_eq!(
            substitute("{grpc_port}{grpc_port}", vars).unwrap(),
            "43174317"
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(
            substitute("json={{\"port\": {grpc_port}}}", vars).unwrap(),
            "json={\"port\": 4317}"
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(
            substitute("{nope}", vars)
                .unwrap_err()
                .contains("unknown placeholder {nope}")
        );
        assert!(
            substitute("x {grpc_port", vars)
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(substitute("x } y", vars).unwrap_err().contains("lone"));
        assert!(
            substitute("{}", vars)
                .unwrap_err()
                .contains("bad placeholder")
        );
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(
            split_words("  bin --x 'a b'  \"c \\\"d\\\" e\" f\\ g ''").unwrap(),
            vec!["bin", "--x", "a b", "c \"d\" e", "f g", ""]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert!(split_words("a 'b").is_err());
        assert!(split_words("a \"b").is_err());
        assert!(split_words("a \\").is_err());
    }

    #[test]
    fn random_templates_never_panic() {
        let alphabet = ['{', '}', 'a', ' ', '\'', '"', '\\', 'é', '_'];
        let mut rng = oxcol_core::testdata::XorShift64(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let state = rng.next_u64();
            let len = (state % 12) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((state >> (i * 4)) % alphabet.len() as u64) as usize])
                .collect();
            let _ = substitute(&text, |name| Ok(name.len().to_string()));
            let _ = split_words(&text);
        }
    }
}
