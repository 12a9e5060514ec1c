//! The parsed form of statements and conditions, and the recursive-descent parser that
//! builds it from tokens. Paths are resolved against the context and function arguments
//! bound to their parameters here, once, so evaluation never looks at names.

use crate::funcs::{self, Func, Param};
use crate::lexer::{Tok, Token, lex};
use crate::paths::{Field, resolve_field};
use crate::value::{CmpOp, Value};
use crate::{ContextKind, ParseError};

#[derive(Clone, Debug)]
pub(crate) struct PathExpr {
    pub field: Field,
    pub keys: Vec<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Debug)]
pub(crate) enum Expr {
    Lit(Value),
    Path(Box<PathExpr>),
    /// A converter call with optional indexes (`Split(x, ",")[0]`).
    Call(Box<Call>, Vec<Expr>),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    Neg(Box<Expr>),
    Math(Box<Expr>, MathOp, Box<Expr>),
    /// An upper-case name that is not an enum: only valid as a function argument.
    Name(String, usize),
}

#[derive(Clone, Debug)]
pub(crate) enum BoolExpr {
    Lit(bool),
    Cmp(Expr, CmpOp, Expr),
    /// A converter returning a bool.
    Value(Expr),
    Not(Box<BoolExpr>),
    And(Vec<BoolExpr>),
    Or(Vec<BoolExpr>),
}

/// A bound function argument.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Absent,
    Expr(Expr),
    Regex(regex::Regex),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrList(Vec<String>),
    Func(Func),
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub func: Func,
    pub args: Vec<Arg>,
    /// The replacement of `replace_pattern`, prepared at parse time when it is a literal
    /// without a hash function.
    pub template: Option<funcs::Template>,
}

pub(crate) fn cmp_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
    }
}

/// What parsing collects for context inference: the context prefixes of paths, and the
/// functions used.
#[derive(Default, Debug)]
pub(crate) struct Hints {
    pub prefixes: Vec<(ContextKind, usize)>,
    pub functions: Vec<Func>,
}

pub(crate) struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    context: ContextKind,
    pub hints: Hints,
    /// When set, paths are not resolved against a context (used to collect hints).
    pub lenient_paths: bool,
    /// Nesting depth, bounded so hostile input cannot exhaust the stack.
    depth: usize,
    /// Regexes compiled so far, by pattern. A parenthesised condition is first tried as
    /// a comparison and, when that fails, parsed again as a boolean group, so a call
    /// inside nested parentheses is bound once per level: without this, its regex was
    /// compiled that often (a fuzzer's 600-byte condition took 0.3 s). A pattern that
    /// does not compile is kept with its error: a failure can take the regex crate 40 ms
    /// (a huge repetition count hitting its size limit), and 37 levels of parentheses
    /// around it took a fuzzer's 105-byte condition over 10 s.
    regexes: std::collections::HashMap<String, Result<regex::Regex, String>>,
}

fn err(offset: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        offset,
        message: message.into(),
    }
}

/// The context names accepted as path prefixes.
pub(crate) fn prefix_context(name: &str) -> Option<ContextKind> {
    Some(match name {
        "resource" => ContextKind::Resource,
        "scope" | "instrumentation_scope" => ContextKind::Scope,
        "metric" => ContextKind::Metric,
        "datapoint" => ContextKind::DataPoint,
        "span" => ContextKind::Span,
        "spanevent" => ContextKind::SpanEvent,
        "log" => ContextKind::Log,
        _ => return None,
    })
}

/// Whether a path of context `prefix` can be read from an item of context `context`.
pub(crate) fn reachable(context: ContextKind, prefix: ContextKind) -> bool {
    use ContextKind::*;
    prefix == context
        || match context {
            Resource => false,
            Scope => prefix == Resource,
            Metric | Span | Log => matches!(prefix, Resource | Scope),
            DataPoint => matches!(prefix, Resource | Scope | Metric),
            SpanEvent => matches!(prefix, Resource | Scope | Span),
        }
}

impl Parser {
    pub(crate) fn new(text: &str, context: ContextKind) -> Result<Parser, ParseError> {
        Ok(Parser {
            tokens: lex(text)?,
            pos: 0,
            context,
            hints: Hints::default(),
            lenient_paths: false,
            depth: 0,
            regexes: Default::default(),
        })
    }

    fn peek(&self) -> &Tok {
        &self.tokens[self.pos.min(self.tokens.len() - 1)].tok
    }
    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }
    fn offset(&self) -> usize {
        self.tokens[self.pos.min(self.tokens.len() - 1)].offset
    }
    fn bump(&mut self) -> Token {
        let t = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s == word)
    }
    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), ParseError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            Err(err(
                self.offset(),
                format!("expected {what} but found {}", self.peek().describe()),
            ))
        }
    }

    pub(crate) fn expect_end(&self) -> Result<(), ParseError> {
        match self.peek() {
            Tok::Eof => Ok(()),
            other => Err(err(
                self.offset(),
                format!(
                    "unexpected {} after the end of the expression",
                    other.describe()
                ),
            )),
        }
    }

    /// `editor(args) [where condition]`
    pub(crate) fn statement(&mut self) -> Result<(Call, Option<BoolExpr>), ParseError> {
        let offset = self.offset();
        let name = match self.peek().clone() {
            Tok::Ident(name) if matches!(self.peek_at(1), Tok::LParen) => name,
            other => {
                return Err(err(
                    offset,
                    format!(
                        "a statement starts with an editor call like set(...), found {}",
                        other.describe()
                    ),
                ));
            }
        };
        if name.starts_with(|c: char| c.is_uppercase()) {
            return Err(err(
                offset,
                format!(
                    "{name:?} is a converter; a statement must start with an editor (lower-case name, e.g. set)"
                ),
            ));
        }
        self.bump();
        let call = self.call(&name, offset, true)?;
        let condition = if self.is_keyword("where") {
            self.bump();
            Some(self.bool_expr()?)
        } else {
            None
        };
        self.expect_end()?;
        Ok((call, condition))
    }

    pub(crate) fn bool_expr(&mut self) -> Result<BoolExpr, ParseError> {
        self.nested(Self::bool_expr_inner)
    }

    fn bool_expr_inner(&mut self) -> Result<BoolExpr, ParseError> {
        let mut terms = vec![self.bool_term()?];
        while self.is_keyword("or") {
            self.bump();
            terms.push(self.bool_term()?);
        }
        Ok(if terms.len() == 1 {
            terms.pop().unwrap_or(BoolExpr::Lit(false))
        } else {
            BoolExpr::Or(terms)
        })
    }

    fn bool_term(&mut self) -> Result<BoolExpr, ParseError> {
        let mut factors = vec![self.bool_factor()?];
        while self.is_keyword("and") {
            self.bump();
            factors.push(self.bool_factor()?);
        }
        Ok(if factors.len() == 1 {
            factors.pop().unwrap_or(BoolExpr::Lit(false))
        } else {
            BoolExpr::And(factors)
        })
    }

    /// Runs `f` one nesting level deeper; too deep is an error, not a stack overflow.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        const MAX_DEPTH: usize = 100;
        if self.depth >= MAX_DEPTH {
            return Err(err(
                self.offset(),
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn bool_factor(&mut self) -> Result<BoolExpr, ParseError> {
        self.nested(Self::bool_factor_inner)
    }

    fn bool_factor_inner(&mut self) -> Result<BoolExpr, ParseError> {
        if self.is_keyword("not") {
            self.bump();
            return Ok(BoolExpr::Not(Box::new(self.bool_factor()?)));
        }
        let start = self.pos;
        let start_offset = self.offset();
        if *self.peek() == Tok::LParen {
            // Either a parenthesised boolean expression or a math expression compared.
            let hints_len = (self.hints.prefixes.len(), self.hints.functions.len());
            if let Ok(Some(cmp)) = self.try_comparison() {
                return Ok(cmp);
            }
            self.pos = start;
            self.hints.prefixes.truncate(hints_len.0);
            self.hints.functions.truncate(hints_len.1);
            self.bump();
            let inner = self.bool_expr()?;
            self.expect(Tok::RParen, "\")\"")?;
            return Ok(inner);
        }
        match self.try_comparison()? {
            Some(cmp) => Ok(cmp),
            None => {
                self.pos = start;
                let value = self.value()?;
                match value {
                    Expr::Lit(Value::Bool(b)) => Ok(BoolExpr::Lit(b)),
                    Expr::Call(..) => Ok(BoolExpr::Value(value)),
                    _ => Err(err(
                        self.offset(),
                        format!(
                            "expected a comparison operator (==, !=, <, <=, >, >=) after the value at position {start_offset}, found {}",
                            self.peek().describe()
                        ),
                    )),
                }
            }
        }
    }

    /// `value op value`, or None when the value is not followed by an operator.
    fn try_comparison(&mut self) -> Result<Option<BoolExpr>, ParseError> {
        let left = self.value()?;
        if let Tok::Cmp(op) = *self.peek() {
            self.bump();
            let right = self.value()?;
            check_value(&left)?;
            check_value(&right)?;
            return Ok(Some(BoolExpr::Cmp(left, op, right)));
        }
        Ok(None)
    }

    /// A value: a math expression over literals, paths, converters, lists and maps.
    pub(crate) fn value(&mut self) -> Result<Expr, ParseError> {
        self.nested(Self::value_inner)
    }

    fn value_inner(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.math_term()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => MathOp::Add,
                Tok::Minus => MathOp::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.math_term()?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
    }

    fn math_term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.math_factor()?;
        loop {
            let op = match self.peek() {
                Tok::Star => MathOp::Mul,
                Tok::Slash => MathOp::Div,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.math_factor()?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
    }

    fn math_factor(&mut self) -> Result<Expr, ParseError> {
        self.nested(Self::math_factor_inner)
    }

    fn math_factor_inner(&mut self) -> Result<Expr, ParseError> {
        if *self.peek() == Tok::Minus {
            self.bump();
            let inner = self.math_factor()?;
            return Ok(match inner {
                Expr::Lit(Value::Int(i)) => Expr::Lit(Value::Int(i.wrapping_neg())),
                Expr::Lit(Value::Double(d)) => Expr::Lit(Value::Double(-d)),
                other => Expr::Neg(Box::new(other)),
            });
        }
        if *self.peek() == Tok::Plus {
            self.bump();
            return self.math_factor();
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let offset = self.offset();
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Value::Str(s)))
            }
            Tok::Int(i) => {
                self.bump();
                Ok(Expr::Lit(Value::Int(i)))
            }
            Tok::Float(f) => {
                self.bump();
                Ok(Expr::Lit(Value::Double(f)))
            }
            Tok::Bytes(b) => {
                self.bump();
                Ok(Expr::Lit(Value::Bytes(b)))
            }
            Tok::LParen => {
                self.bump();
                let inner = self.value()?;
                self.expect(Tok::RParen, "\")\"")?;
                Ok(inner)
            }
            Tok::LBrack => {
                self.bump();
                let mut items = Vec::new();
                if *self.peek() != Tok::RBrack {
                    loop {
                        let item = self.value()?;
                        check_value(&item)?;
                        items.push(item);
                        if *self.peek() == Tok::Comma {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                }
                self.expect(Tok::RBrack, "\",\" or \"]\" in the list")?;
                Ok(Expr::List(items))
            }
            Tok::LBrace => {
                self.bump();
                let mut entries = Vec::new();
                if *self.peek() != Tok::RBrace {
                    loop {
                        let key = match self.peek().clone() {
                            Tok::Str(s) => s,
                            other => {
                                return Err(err(
                                    self.offset(),
                                    format!("map keys must be strings, found {}", other.describe()),
                                ));
                            }
                        };
                        self.bump();
                        self.expect(Tok::Colon, "\":\" after the map key")?;
                        let value = self.value()?;
                        check_value(&value)?;
                        entries.push((key, value));
                        if *self.peek() == Tok::Comma {
                            self.bump();
                            continue;
                        }
                        break;
                    }
                }
                self.expect(Tok::RBrace, "\",\" or \"}\" in the map")?;
                Ok(Expr::Map(entries))
            }
            Tok::Ident(name) => {
                if matches!(self.peek_at(1), Tok::LParen) {
                    if !name.starts_with(|c: char| c.is_uppercase()) {
                        return Err(err(
                            offset,
                            format!(
                                "editor {name:?} cannot be used as a value; converters start with an upper-case letter"
                            ),
                        ));
                    }
                    self.bump();
                    let call = self.call(&name, offset, false)?;
                    let keys = self.keys()?;
                    return Ok(Expr::Call(Box::new(call), keys));
                }
                match name.as_str() {
                    "true" => {
                        self.bump();
                        return Ok(Expr::Lit(Value::Bool(true)));
                    }
                    "false" => {
                        self.bump();
                        return Ok(Expr::Lit(Value::Bool(false)));
                    }
                    "nil" => {
                        self.bump();
                        return Ok(Expr::Lit(Value::Nil));
                    }
                    _ => {}
                }
                if name.starts_with(|c: char| c.is_uppercase()) {
                    self.bump();
                    return Ok(match enum_value(&name) {
                        Some(v) => Expr::Lit(Value::Int(v)),
                        None => Expr::Name(name, offset),
                    });
                }
                self.path()
            }
            other => Err(err(
                offset,
                format!("expected a value but found {}", other.describe()),
            )),
        }
    }

    fn keys(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut keys = Vec::new();
        while *self.peek() == Tok::LBrack {
            self.bump();
            let key_offset = self.offset();
            let key = self.value()?;
            match &key {
                Expr::Lit(Value::Str(_))
                | Expr::Lit(Value::Int(_))
                | Expr::Path(_)
                | Expr::Call(..)
                | Expr::Math(..) => {}
                _ => {
                    return Err(err(
                        key_offset,
                        "a key must be a string, an int, a path or a converter",
                    ));
                }
            }
            self.expect(Tok::RBrack, "\"]\"")?;
            keys.push(key);
        }
        Ok(keys)
    }

    fn path(&mut self) -> Result<Expr, ParseError> {
        let offset = self.offset();
        let mut segments: Vec<(String, usize)> = Vec::new();
        let mut keys = Vec::new();
        loop {
            let Tok::Ident(name) = self.peek().clone() else {
                return Err(err(
                    self.offset(),
                    format!(
                        "expected a path segment after \".\", found {}",
                        self.peek().describe()
                    ),
                ));
            };
            let seg_offset = self.offset();
            self.bump();
            segments.push((name, seg_offset));
            if *self.peek() == Tok::LBrack {
                keys = self.keys()?;
                if *self.peek() == Tok::Dot {
                    return Err(err(self.offset(), "a path cannot continue after keys"));
                }
                break;
            }
            if *self.peek() == Tok::Dot {
                self.bump();
                continue;
            }
            break;
        }
        let full: Vec<&str> = segments.iter().map(|(s, _)| s.as_str()).collect();
        let text = full.join(".");
        let (context, names) = match prefix_context(full[0]) {
            Some(ctx) if full.len() > 1 => {
                self.hints.prefixes.push((ctx, offset));
                (ctx, &full[1..])
            }
            _ => (self.context, &full[..]),
        };
        if self.lenient_paths {
            return Ok(Expr::Path(Box::new(PathExpr {
                field: Field::Cache,
                keys,
            })));
        }
        if !reachable(self.context, context) {
            return Err(err(
                offset,
                format!(
                    "path {text:?} refers to the {} context, which cannot be reached from the {} context",
                    context.name(),
                    self.context.name()
                ),
            ));
        }
        let field = resolve_field(context, names).ok_or_else(|| {
            err(offset, format!("{text:?} is not a valid path for the {} context (see docs/ottl.md for the paths oxcol supports)", context.name()))
        })?;
        if !keys.is_empty() && !field.indexable() {
            return Err(err(
                offset,
                format!("path {text:?} cannot be indexed with [...]"),
            ));
        }
        Ok(Expr::Path(Box::new(PathExpr { field, keys })))
    }

    /// The argument list of function `name` (the name was consumed; `(` is next) bound to
    /// its parameters.
    fn call(&mut self, name: &str, offset: usize, editor: bool) -> Result<Call, ParseError> {
        let func = funcs::lookup(name).ok_or_else(|| {
            err(
                offset,
                format!(
                    "unknown {} {name:?} (see docs/ottl.md for the functions oxcol supports)",
                    if editor { "editor" } else { "converter" }
                ),
            )
        })?;
        if func.is_editor() != editor {
            return Err(err(
                offset,
                format!(
                    "{name:?} is {}",
                    if editor {
                        "a converter, not an editor"
                    } else {
                        "an editor, not a converter"
                    }
                ),
            ));
        }
        self.hints.functions.push(func);
        self.expect(Tok::LParen, "\"(\"")?;
        let params = func.params();
        let mut positional: Vec<(Expr, usize)> = Vec::new();
        let mut named: Vec<(String, Expr, usize)> = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                let arg_offset = self.offset();
                if let (Tok::Ident(arg_name), Tok::Assign) =
                    (self.peek().clone(), self.peek_at(1).clone())
                {
                    self.bump();
                    self.bump();
                    let value = self.value()?;
                    if named.iter().any(|(n, _, _)| *n == arg_name) {
                        return Err(err(
                            arg_offset,
                            format!("argument {arg_name:?} given twice"),
                        ));
                    }
                    named.push((arg_name, value, arg_offset));
                } else {
                    if !named.is_empty() {
                        return Err(err(
                            arg_offset,
                            "positional arguments cannot follow named arguments",
                        ));
                    }
                    if matches!(self.peek(), Tok::RParen | Tok::Comma) {
                        return Err(err(arg_offset, "expected an argument"));
                    }
                    let value = self.value()?;
                    positional.push((value, arg_offset));
                }
                if *self.peek() == Tok::Comma {
                    self.bump();
                    if *self.peek() == Tok::RParen {
                        return Err(err(self.offset(), "expected an argument"));
                    }
                    continue;
                }
                break;
            }
        }
        let close = self.offset();
        self.expect(Tok::RParen, "\",\" or \")\" in the argument list")?;
        let required = params.iter().filter(|p| !p.1.optional()).count();
        if positional.len() > params.len() {
            return Err(err(
                positional[params.len()].1,
                format!(
                    "too many arguments for {name}: it takes {}",
                    describe_params(params)
                ),
            ));
        }
        let mut slots: Vec<Option<(Expr, usize)>> = vec![None; params.len()];
        for (i, p) in positional.into_iter().enumerate() {
            slots[i] = Some(p);
        }
        for (arg_name, value, arg_offset) in named {
            let Some(i) = params.iter().position(|p| p.0 == arg_name) else {
                return Err(err(
                    arg_offset,
                    format!(
                        "{name} has no parameter {arg_name:?}: it takes {}",
                        describe_params(params)
                    ),
                ));
            };
            if slots[i].is_some() {
                return Err(err(
                    arg_offset,
                    format!("argument {arg_name:?} given twice"),
                ));
            }
            slots[i] = Some((value, arg_offset));
        }
        let given = slots.iter().filter(|s| s.is_some()).count();
        let mut args = Vec::with_capacity(params.len());
        for (i, (param_name, param)) in params.iter().enumerate() {
            match slots[i].take() {
                None if param.optional() => args.push(Arg::Absent),
                None => {
                    return Err(err(
                        close,
                        format!(
                            "{name} needs {required} argument(s) ({}) but got {given}: missing {param_name:?}",
                            describe_params(params)
                        ),
                    ));
                }
                Some((expr, arg_offset)) => args.push(bind(
                    name,
                    param_name,
                    *param,
                    expr,
                    arg_offset,
                    editor && i == 0,
                    &mut self.regexes,
                )?),
            }
        }
        funcs::check_call(func, &args).map_err(|m| err(offset, format!("{name}: {m}")))?;
        let template = funcs::Template::prepare(func, &args);
        Ok(Call {
            func,
            args,
            template,
        })
    }
}

fn describe_params(params: &[(&str, Param)]) -> String {
    if params.is_empty() {
        return "no arguments".to_string();
    }
    params
        .iter()
        .map(|(n, p)| {
            if p.optional() {
                format!("optional {n}")
            } else {
                n.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rejects function names used as values.
fn check_value(expr: &Expr) -> Result<(), ParseError> {
    match expr {
        Expr::Name(name, offset) => Err(err(
            *offset,
            format!("unknown enum or name {name:?} (converters need parentheses: {name}(...))"),
        )),
        Expr::Math(a, _, b) => {
            check_value(a)?;
            check_value(b)
        }
        Expr::Neg(a) => check_value(a),
        _ => Ok(()),
    }
}

fn bind(
    func: &str,
    param_name: &str,
    param: Param,
    expr: Expr,
    offset: usize,
    editor_target: bool,
    regexes: &mut std::collections::HashMap<String, Result<regex::Regex, String>>,
) -> Result<Arg, ParseError> {
    let e = |m: String| err(offset, format!("{func} argument {param_name:?}: {m}"));
    match param {
        Param::Target => match expr {
            Expr::Path(_) => Ok(Arg::Expr(expr)),
            _ if editor_target => Err(e(
                "must be a path (what the editor changes), e.g. attributes[\"key\"]".to_string(),
            )),
            _ => Err(e("must be a path".to_string())),
        },
        Param::Get | Param::OptGet => {
            check_value(&expr)?;
            Ok(Arg::Expr(expr))
        }
        Param::Str | Param::OptStr => match expr {
            Expr::Lit(Value::Str(s)) => Ok(Arg::Str(s)),
            _ => Err(e("must be a string literal".to_string())),
        },
        Param::Choice(choices) => match expr {
            Expr::Lit(Value::Str(s)) if choices.contains(&s.as_str()) => Ok(Arg::Str(s)),
            Expr::Lit(Value::Str(s)) => {
                Err(e(format!("{s:?} is not one of {}", choices.join(", "))))
            }
            _ => Err(e(format!(
                "must be one of the strings {}",
                choices.join(", ")
            ))),
        },
        Param::Regex => match expr {
            Expr::Lit(Value::Str(s)) => regexes
                .entry(s)
                .or_insert_with_key(|s| {
                    regex::Regex::new(s).map_err(|re| format!("invalid regex {s:?}: {re}"))
                })
                .clone()
                .map(Arg::Regex)
                .map_err(e),
            _ => Err(e("must be a string literal holding a regex".to_string())),
        },
        Param::Glob => match expr {
            Expr::Lit(Value::Str(s)) => funcs::glob_regex(&s)
                .map(Arg::Regex)
                .map_err(|m| e(format!("invalid pattern {s:?}: {m}"))),
            _ => Err(e(
                "must be a string literal holding a glob pattern".to_string()
            )),
        },
        Param::Int | Param::OptInt => match expr {
            Expr::Lit(Value::Int(i)) => Ok(Arg::Int(i)),
            _ => Err(e("must be an int literal".to_string())),
        },
        Param::Float => match expr {
            Expr::Lit(Value::Double(d)) => Ok(Arg::Float(d)),
            Expr::Lit(Value::Int(i)) => Ok(Arg::Float(i as f64)),
            _ => Err(e("must be a number literal".to_string())),
        },
        Param::Bool | Param::OptBool => match expr {
            Expr::Lit(Value::Bool(b)) => Ok(Arg::Bool(b)),
            _ => Err(e("must be true or false".to_string())),
        },
        Param::StrList => match expr {
            Expr::List(items) => items
                .into_iter()
                .map(|i| match i {
                    Expr::Lit(Value::Str(s)) => Ok(s),
                    _ => Err(e("must be a list of string literals".to_string())),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Arg::StrList),
            _ => Err(e(
                "must be a list of string literals, e.g. [\"a\", \"b\"]".to_string()
            )),
        },
        Param::OptFunc => match expr {
            Expr::Name(name, name_offset) => match funcs::lookup(&name) {
                Some(f) if f.accepts_function_argument_role() => Ok(Arg::Func(f)),
                _ => Err(err(
                    name_offset,
                    format!(
                        "{func} argument {param_name:?}: {name:?} is not a hash converter (SHA1, SHA256, SHA512, MD5, FNV, Murmur3Hash are not all supported: see docs/ottl.md)"
                    ),
                )),
            },
            _ => Err(e("must be the name of a converter, e.g. SHA256".to_string())),
        },
    }
}

/// The integer value of an OTTL enum symbol.
pub(crate) fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "FLAG_NONE" => 0,
        "FLAG_NO_RECORDED_VALUE" => 1,
        _ => return severity_number(name),
    })
}

fn severity_number(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    severity_word(rest).map(i64::from)
}

/// The number of an OTLP severity word in upper case: `TRACE` 1 .. `FATAL4` 24 (`INFO` 9,
/// `INFO2` 10, ...).
pub fn severity_word(word: &str) -> Option<i32> {
    let bases = [
        ("TRACE", 1),
        ("DEBUG", 5),
        ("INFO", 9),
        ("WARN", 13),
        ("ERROR", 17),
        ("FATAL", 21),
    ];
    for (name, base) in bases {
        if let Some(suffix) = word.strip_prefix(name) {
            return match suffix {
                "" => Some(base),
                "2" => Some(base + 1),
                "3" => Some(base + 2),
                "4" => Some(base + 3),
                _ => None,
            };
        }
    }
    None
}
