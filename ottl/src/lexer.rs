//! The OTTL lexer: text to tokens, each with the 0-based character offset it starts at.

use crate::ParseError;
use crate::value::CmpOp;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    LParen,
    RParen,
    LBrack,
    RBrack,
    LBrace,
    RBrace,
    Comma,
    Dot,
    Colon,
    Assign,
    Cmp(CmpOp),
    Plus,
    Minus,
    Star,
    Slash,
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("{s:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Int(i) => format!("{i}"),
            Tok::Float(f) => format!("{f}"),
            Tok::Bytes(_) => "bytes literal".to_string(),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::LBrack => "\"[\"".into(),
            Tok::RBrack => "\"]\"".into(),
            Tok::LBrace => "\"{\"".into(),
            Tok::RBrace => "\"}\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Dot => "\".\"".into(),
            Tok::Colon => "\":\"".into(),
            Tok::Assign => "\"=\"".into(),
            Tok::Cmp(op) => format!("{:?}", crate::ast::cmp_text(*op)),
            Tok::Plus => "\"+\"".into(),
            Tok::Minus => "\"-\"".into(),
            Tok::Star => "\"*\"".into(),
            Tok::Slash => "\"/\"".into(),
            Tok::Eof => "the end of the text".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub tok: Tok,
    pub offset: usize,
}

fn err(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        offset,
        message: message.into(),
    }
}

pub(crate) fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let simple = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBrack),
            ']' => Some(Tok::RBrack),
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            ',' => Some(Tok::Comma),
            ':' => Some(Tok::Colon),
            '+' => Some(Tok::Plus),
            '-' => Some(Tok::Minus),
            '*' => Some(Tok::Star),
            '/' => Some(Tok::Slash),
            _ => None,
        };
        if let Some(tok) = simple {
            out.push(Token { tok, offset: start });
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        match c {
            '=' if next == Some('=') => {
                out.push(Token {
                    tok: Tok::Cmp(CmpOp::Eq),
                    offset: start,
                });
                i += 2;
            }
            '=' => {
                out.push(Token {
                    tok: Tok::Assign,
                    offset: start,
                });
                i += 1;
            }
            '!' if next == Some('=') => {
                out.push(Token {
                    tok: Tok::Cmp(CmpOp::Ne),
                    offset: start,
                });
                i += 2;
            }
            '<' | '>' => {
                let eq = next == Some('=');
                let op = match (c, eq) {
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                out.push(Token {
                    tok: Tok::Cmp(op),
                    offset: start,
                });
                i += if eq { 2 } else { 1 };
            }
            '"' => {
                let (s, end) = lex_string(&chars, i)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    offset: start,
                });
                i = end;
            }
            '0' if matches!(next, Some('x') | Some('X')) => {
                let mut j = i + 2;
                while j < chars.len() && chars[j].is_ascii_hexdigit() {
                    j += 1;
                }
                let digits: String = chars[i + 2..j].iter().collect();
                if digits.is_empty() || !digits.len().is_multiple_of(2) {
                    return Err(err(
                        start,
                        "a bytes literal needs an even number of hex digits after 0x (e.g. 0x0a1f)",
                    ));
                }
                let bytes = crate::value::hex_decode(&digits)
                    .ok_or_else(|| err(start, "invalid hex digits in bytes literal"))?;
                out.push(Token {
                    tok: Tok::Bytes(bytes),
                    offset: start,
                });
                i = j;
            }
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let mut j = i;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let mut is_float = false;
                if j < chars.len()
                    && chars[j] == '.'
                    && chars.get(j + 1).is_some_and(|n| n.is_ascii_digit())
                {
                    is_float = true;
                    j += 1;
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                if is_float && j < chars.len() && matches!(chars[j], 'e' | 'E') {
                    let mut k = j + 1;
                    if k < chars.len() && matches!(chars[k], '+' | '-') {
                        k += 1;
                    }
                    if k < chars.len() && chars[k].is_ascii_digit() {
                        while k < chars.len() && chars[k].is_ascii_digit() {
                            k += 1;
                        }
                        j = k;
                    }
                }
                let text: String = chars[i..j].iter().collect();
                let tok = if is_float {
                    Tok::Float(
                        text.parse()
                            .map_err(|_| err(start, format!("invalid number {text:?}")))?,
                    )
                } else {
                    Tok::Int(text.parse().map_err(|_| {
                        err(start, format!("integer {text} does not fit in 64 bits"))
                    })?)
                };
                if j < chars.len() && (chars[j].is_alphabetic() || chars[j] == '_') {
                    return Err(err(
                        j,
                        format!("unexpected character {:?} after number", chars[j]),
                    ));
                }
                out.push(Token { tok, offset: start });
                i = j;
            }
            '.' => {
                out.push(Token {
                    tok: Tok::Dot,
                    offset: start,
                });
                i += 1;
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(chars[i..j].iter().collect()),
                    offset: start,
                });
                i = j;
            }
            other => return Err(err(start, format!("unexpected character {other:?}"))),
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: chars.len(),
    });
    Ok(out)
}

/// A double-quoted string with Go escapes (`\"`, `\\`, `\n`, `\t`, `\r`, `\a`, `\b`,
/// `\f`, `\v`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`, octal `\NNN`). Returns the text and the
/// index after the closing quote.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), ParseError> {
    let mut s = String::new();
    let mut i = start + 1;
    let mut raw_bytes: Vec<u8> = Vec::new();
    let flush = |s: &mut String, raw: &mut Vec<u8>| {
        if !raw.is_empty() {
            s.push_str(&String::from_utf8_lossy(raw));
            raw.clear();
        }
    };
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(err(start, "string is not closed: add the closing \""));
        };
        match c {
            '"' => {
                flush(&mut s, &mut raw_bytes);
                return Ok((s, i + 1));
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err(err(start, "string is not closed: add the closing \""));
                };
                let simple = match e {
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    '\'' => Some('\''),
                    _ => None,
                };
                if let Some(ch) = simple {
                    flush(&mut s, &mut raw_bytes);
                    s.push(ch);
                    i += 2;
                    continue;
                }
                let hex = |from: usize, n: usize| -> Option<u32> {
                    let digits: String = chars.get(from..from + n)?.iter().collect();
                    if digits.chars().all(|c| c.is_ascii_hexdigit()) {
                        u32::from_str_radix(&digits, 16).ok()
                    } else {
                        None
                    }
                };
                match e {
                    'x' => {
                        let v = hex(i + 2, 2)
                            .ok_or_else(|| err(i, "\\x must be followed by two hex digits"))?;
                        raw_bytes.push(v as u8);
                        i += 4;
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let v = hex(i + 2, n).ok_or_else(|| {
                            err(i, format!("\\{e} must be followed by {n} hex digits"))
                        })?;
                        let ch = char::from_u32(v)
                            .ok_or_else(|| err(i, "escape is not a valid unicode code point"))?;
                        flush(&mut s, &mut raw_bytes);
                        s.push(ch);
                        i += 2 + n;
                    }
                    '0'..='7' => {
                        let digits: String = chars
                            .get(i + 1..i + 4)
                            .map(|d| d.iter().collect())
                            .unwrap_or_default();
                        let v = u32::from_str_radix(&digits, 8)
                            .ok()
                            .filter(|v| *v <= 255 && digits.len() == 3)
                            .ok_or_else(|| {
                                err(
                                    i,
                                    "an octal escape needs three octal digits (\\000 to \\377)",
                                )
                            })?;
                        raw_bytes.push(v as u8);
                        i += 4;
                    }
                    other => {
                        return Err(err(
                            i,
                            format!(
                                "invalid escape \\{other} in string (write \\\\{other} for a literal backslash, e.g. in a regex)"
                            ),
                        ));
                    }
                }
            }
            c => {
                flush(&mut s, &mut raw_bytes);
                s.push(c);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn lexes_every_token_kind_with_offsets() {
        let tokens = lex(r#"set(attributes["a"], 1.5) where x >= -2 and 0xAB01 != nil"#).unwrap();
        let offsets: Vec<usize> = tokens.iter().map(|t| t.offset).collect();
        assert_eq!(tokens[0].tok, Tok::Ident("set".into()));
        assert_eq!(tokens[4].tok, Tok::Str("a".into()));
        assert_eq!(tokens[4].offset, 15);
        assert_eq!(tokens[7].tok, Tok::Float(1.5));
        assert!(tokens.iter().any(|t| t.tok == Tok::Cmp(CmpOp::Ge)));
        assert!(tokens.iter().any(|t| t.tok == Tok::Bytes(vec![0xab, 0x01])));
        assert!(offsets.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            toks("a<b<=c>d==e!=f"),
            vec![
                Tok::Ident("a".into()),
                Tok::Cmp(CmpOp::Lt),
                Tok::Ident("b".into()),
                Tok::Cmp(CmpOp::Le),
                Tok::Ident("c".into()),
                Tok::Cmp(CmpOp::Gt),
                Tok::Ident("d".into()),
                Tok::Cmp(CmpOp::Eq),
                Tok::Ident("e".into()),
                Tok::Cmp(CmpOp::Ne),
                Tok::Ident("f".into()),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("1.5e3 .5 2.5e-1"),
            vec![
                Tok::Float(1500.0),
                Tok::Float(0.5),
                Tok::Float(0.25),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            toks(r#""a\"b\\c\n\t\x41\u00e9""#)[0],
            Tok::Str("a\"b\\c\n\tAé".into())
        );
        assert_eq!(toks(r#""\\d+""#)[0], Tok::Str("\\d+".into()));
        let e = lex(r#"x == "\d""#).unwrap_err();
        assert_eq!(e.offset, 6);
        assert!(e.message.contains("invalid escape"), "{}", e.message);
        let e = lex(r#"x == "open"#).unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("not closed"));
    }

    #[test]
    fn lexer_errors_carry_offsets() {
        assert_eq!(lex("a == 0x1").unwrap_err().offset, 5);
        assert_eq!(lex("a == 99999999999999999999").unwrap_err().offset, 5);
        assert_eq!(lex("a ~ b").unwrap_err().offset, 2);
        assert_eq!(lex("a == 12ab").unwrap_err().offset, 7);
    }
}
