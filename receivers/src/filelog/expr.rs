//! The small part of stanza's expression language (expr-lang) that `if`, router routes,
//! `filter` and recombine's `is_first_entry`/`is_last_entry` use in real configs:
//! fields (`body`, `attributes.x`, `attributes["log.file.path"]`, `resource.x`), string,
//! number, `true`/`false`/`nil` literals, `==`, `!=`, `<`, `<=`, `>`, `>=`, `matches`,
//! `contains`, `startsWith`, `endsWith`, `in [..]`, `&&`/`and`, `||`/`or`, `!`/`not` and
//! parentheses. `matches` takes a literal pattern (compiled once).
//!
//! Anything else (function calls such as `env()`, arithmetic, `EXPR(...)`) is refused when
//! the config is checked, with a message naming what is supported.

use regex::Regex;
use serde_json::Value;

use super::entry::{Entry, Field};

#[derive(Clone, Debug)]
pub enum Expr {
    Literal(Value),
    Field(Field),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, CompareOp, Box<Expr>),
    Matches(Box<Expr>, Regex),
    In(Box<Expr>, Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Ident(String),
    Sym(&'static str),
}

const SUPPORTED: &str = "supported: fields (body, attributes.x, attributes[\"x\"], resource.x), string/number/true/false/nil literals, == != < <= > >= matches contains startsWith endsWith in [..], && || ! and or not, parentheses";

fn lex(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(format!("expression {text:?}: unterminated string"));
                };
                i += 1;
                if ch == c {
                    break;
                }
                if ch == '\\' && c != '`' {
                    let Some(&esc) = chars.get(i) else {
                        return Err(format!("expression {text:?}: unterminated string"));
                    };
                    i += 1;
                    s.push(match esc {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    s.push(ch);
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s
                .parse::<f64>()
                .map_err(|_| format!("expression {text:?}: bad number {s:?}"))?;
            out.push(Tok::Num(n));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = match two.as_str() {
            "==" => Some("=="),
            "!=" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
            "&&" => Some("&&"),
            "||" => Some("||"),
            _ => None,
        };
        if let Some(sym) = sym {
            out.push(Tok::Sym(sym));
            i += 2;
            continue;
        }
        let sym = match c {
            '(' => "(",
            ')' => ")",
            '[' => "[",
            ']' => "]",
            '.' => ".",
            ',' => ",",
            '<' => "<",
            '>' => ">",
            '!' => "!",
            other => {
                return Err(format!(
                    "expression {text:?}: {other:?} is not supported ({SUPPORTED})"
                ));
            }
        };
        out.push(Tok::Sym(sym));
        i += 1;
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn eat_sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym) {
            self.pos += 1;
            return true;
        }
        false
    }
    fn eat_word(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(s)) if s == word) {
            self.pos += 1;
            return true;
        }
        false
    }
    fn error(&self, what: &str) -> String {
        format!("expression {:?}: {what} ({SUPPORTED})", self.text)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat_sym("||") || self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.eat_sym("&&") || self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_sym("!") || self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.compare()
    }
    fn compare(&mut self) -> Result<Expr, String> {
        let left = self.primary()?;
        let op = match self.peek() {
            Some(Tok::Sym("==")) => CompareOp::Eq,
            Some(Tok::Sym("!=")) => CompareOp::Ne,
            Some(Tok::Sym("<")) => CompareOp::Lt,
            Some(Tok::Sym("<=")) => CompareOp::Le,
            Some(Tok::Sym(">")) => CompareOp::Gt,
            Some(Tok::Sym(">=")) => CompareOp::Ge,
            Some(Tok::Ident(w)) if w == "contains" => CompareOp::Contains,
            Some(Tok::Ident(w)) if w == "startsWith" => CompareOp::StartsWith,
            Some(Tok::Ident(w)) if w == "endsWith" => CompareOp::EndsWith,
            Some(Tok::Ident(w)) if w == "matches" => {
                self.pos += 1;
                let Some(Tok::Str(pattern)) = self.peek().cloned() else {
                    return Err(self.error("`matches` needs a literal string pattern"));
                };
                self.pos += 1;
                let regex = Regex::new(&pattern)
                    .map_err(|e| format!("expression {:?}: pattern {pattern:?}: {e}", self.text))?;
                return Ok(Expr::Matches(Box::new(left), regex));
            }
            Some(Tok::Ident(w)) if w == "in" => {
                self.pos += 1;
                if !self.eat_sym("[") {
                    return Err(self.error("`in` needs a list [..]"));
                }
                let mut items = Vec::new();
                if !self.eat_sym("]") {
                    loop {
                        items.push(self.primary()?);
                        if self.eat_sym("]") {
                            break;
                        }
                        if !self.eat_sym(",") {
                            return Err(self.error("expected , or ] in a list"));
                        }
                    }
                }
                return Ok(Expr::In(Box::new(left), items));
            }
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.primary()?;
        Ok(Expr::Compare(Box::new(left), op, Box::new(right)))
    }
    fn primary(&mut self) -> Result<Expr, String> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error("unexpected end"));
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Tok::Num(n) => Ok(Expr::Literal(
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .unwrap_or(Value::Null),
            )),
            Tok::Sym("(") => {
                let inner = self.or()?;
                if !self.eat_sym(")") {
                    return Err(self.error("missing )"));
                }
                Ok(inner)
            }
            Tok::Ident(word) => match word.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "nil" => Ok(Expr::Literal(Value::Null)),
                "body" | "attributes" | "resource" => {
                    let mut text = word.clone();
                    loop {
                        if self.eat_sym(".") {
                            let Some(Tok::Ident(key)) = self.peek().cloned() else {
                                return Err(self.error("expected a key after ."));
                            };
                            self.pos += 1;
                            text.push('.');
                            text.push_str(&key);
                        } else if self.eat_sym("[") {
                            let Some(Tok::Str(key)) = self.peek().cloned() else {
                                return Err(self.error("expected a quoted key in [..]"));
                            };
                            self.pos += 1;
                            if !self.eat_sym("]") {
                                return Err(self.error("missing ]"));
                            }
                            text.push_str(&format!("[\"{key}\"]"));
                        } else {
                            break;
                        }
                    }
                    Ok(Expr::Field(Field::parse(&text)?))
                }
                other => Err(self.error(&format!("{other:?} is not supported"))),
            },
            Tok::Sym(s) => Err(self.error(&format!("unexpected {s:?}"))),
        }
    }
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut parser = Parser {
            toks: lex(text)?,
            pos: 0,
            text,
        };
        let expr = parser.or()?;
        if parser.pos != parser.toks.len() {
            return Err(parser.error("unexpected text after the expression"));
        }
        Ok(expr)
    }

    pub fn eval(&self, entry: &Entry) -> Value {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Field(f) => entry.get(f).cloned().unwrap_or(Value::Null),
            Expr::Not(e) => Value::Bool(!truthy(&e.eval(entry))),
            Expr::And(a, b) => Value::Bool(truthy(&a.eval(entry)) && truthy(&b.eval(entry))),
            Expr::Or(a, b) => Value::Bool(truthy(&a.eval(entry)) || truthy(&b.eval(entry))),
            Expr::Matches(e, re) => Value::Bool(match e.eval(entry) {
                Value::String(s) => re.is_match(&s),
                _ => false,
            }),
            Expr::In(e, items) => {
                let v = e.eval(entry);
                Value::Bool(items.iter().any(|i| equal(&i.eval(entry), &v)))
            }
            Expr::Compare(a, op, b) => {
                let (a, b) = (a.eval(entry), b.eval(entry));
                Value::Bool(match op {
                    CompareOp::Eq => equal(&a, &b),
                    CompareOp::Ne => !equal(&a, &b),
                    CompareOp::Contains | CompareOp::StartsWith | CompareOp::EndsWith => {
                        match (&a, &b) {
                            (Value::String(a), Value::String(b)) => match op {
                                CompareOp::Contains => a.contains(b.as_str()),
                                CompareOp::StartsWith => a.starts_with(b.as_str()),
                                _ => a.ends_with(b.as_str()),
                            },
                            _ => false,
                        }
                    }
                    _ => {
                        let ordering = match (&a, &b) {
                            (Value::Number(x), Value::Number(y)) => {
                                x.as_f64().partial_cmp(&y.as_f64())
                            }
                            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
                            _ => None,
                        };
                        match ordering {
                            Some(o) => match op {
                                CompareOp::Lt => o.is_lt(),
                                CompareOp::Le => o.is_le(),
                                CompareOp::Gt => o.is_gt(),
                                _ => o.is_ge(),
                            },
                            None => false,
                        }
                    }
                })
            }
        }
    }

    pub fn matches(&self, entry: &Entry) -> bool {
        truthy(&self.eval(entry))
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn truthy(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}
