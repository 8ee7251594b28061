//! Label and field selectors with the API server's grammar: `=`, `==`, `!=`, `in`, `notin`,
//! `key` (exists), `!key` (does not exist), `>`/`<` for labels; `=`, `==`, `!=` for fields.

use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    Exists(String),
    DoesNotExist(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Gt(String, i64),
    Lt(String, i64),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Not,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::Not => "!".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Comma => ",".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
        }
    }
}

fn lex(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '>' => {
                out.push(Token::Gt);
                i += 1;
            }
            '<' => {
                out.push(Token::Lt);
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::NotEq);
                i += 2;
            }
            '!' => {
                out.push(Token::Not);
                i += 1;
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                out.push(Token::DoubleEq);
                i += 2;
            }
            '=' => {
                out.push(Token::Eq);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()!=,<>".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
            }
        }
    }
    out
}

/// A qualified name, as label keys must be: an optional DNS-subdomain prefix and `/`, then 1-63
/// of `[A-Za-z0-9._-]`, starting and ending alphanumeric.
fn valid_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty()
                || prefix.len() > 253
                || !prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(format!(
                    "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.' (key {key:?})"
                ));
            }
            name
        }
        None => key,
    };
    valid_name_part(name).map_err(|e| format!("name part {e} (key {key:?})"))
}

fn valid_name_part(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let ok_ends = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 63 || !ok_chars || !ok_ends {
        return Err("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63)".into());
    }
    Ok(())
}

fn valid_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    valid_name_part(value).map_err(|e| format!("Invalid value: {value:?}: a valid label {e}"))
}

/// Parses a label selector (`labelSelector=`); the error is the API server's 400 message.
pub fn parse_labels(input: &str) -> Result<Vec<Requirement>, String> {
    let tokens = lex(input);
    let mut at = 0;
    let mut out = Vec::new();
    if tokens.is_empty() {
        return Ok(out);
    }
    let unexpected = |t: Option<&Token>, expected: &str| match t {
        Some(t) => format!("unable to parse requirement: found '{}', expected: {expected}", t.show()),
        None => format!("unable to parse requirement: found 'end of string', expected: {expected}"),
    };
    loop {
        let requirement = match tokens.get(at) {
            Some(Token::Not) => {
                at += 1;
                match tokens.get(at) {
                    Some(Token::Ident(key)) => {
                        at += 1;
                        valid_key(key).map_err(|e| format!("unable to parse requirement: {e}"))?;
                        Requirement::DoesNotExist(key.clone())
                    }
                    t => return Err(unexpected(t, "identifier")),
                }
            }
            Some(Token::Ident(key)) => {
                at += 1;
                valid_key(key).map_err(|e| format!("unable to parse requirement: {e}"))?;
                match tokens.get(at) {
                    None | Some(Token::Comma) => Requirement::Exists(key.clone()),
                    Some(op @ (Token::Eq | Token::DoubleEq | Token::NotEq)) => {
                        at += 1;
                        let value = match tokens.get(at) {
                            Some(Token::Ident(v)) => {
                                at += 1;
                                v.clone()
                            }
                            None | Some(Token::Comma) => String::new(),
                            t => return Err(unexpected(t, "identifier")),
                        };
                        valid_value(&value).map_err(|e| format!("unable to parse requirement: {e}"))?;
                        if *op == Token::NotEq {
                            Requirement::NotIn(key.clone(), vec![value])
                        } else {
                            Requirement::In(key.clone(), vec![value])
                        }
                    }
                    Some(op @ (Token::In | Token::NotIn)) => {
                        at += 1;
                        if tokens.get(at) != Some(&Token::Open) {
                            return Err(unexpected(tokens.get(at), "'('"));
                        }
                        at += 1;
                        let mut values = Vec::new();
                        loop {
                            match tokens.get(at) {
                                Some(Token::Ident(v)) => {
                                    valid_value(v).map_err(|e| format!("unable to parse requirement: {e}"))?;
                                    values.push(v.clone());
                                    at += 1;
                                    match tokens.get(at) {
                                        Some(Token::Comma) => at += 1,
                                        Some(Token::Close) => {
                                            at += 1;
                                            break;
                                        }
                                        t => return Err(unexpected(t, "',' or ')'")),
                                    }
                                }
                                Some(Token::Comma) => {
                                    values.push(String::new());
                                    at += 1;
                                }
                                Some(Token::Close) => {
                                    at += 1;
                                    break;
                                }
                                t => return Err(unexpected(t, "',', ')' or identifier")),
                            }
                        }
                        if values.is_empty() {
                            return Err(format!(
                                "unable to parse requirement: for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                            ));
                        }
                        if *op == Token::In {
                            Requirement::In(key.clone(), values)
                        } else {
                            Requirement::NotIn(key.clone(), values)
                        }
                    }
                    Some(op @ (Token::Gt | Token::Lt)) => {
                        at += 1;
                        let n = match tokens.get(at) {
                            Some(Token::Ident(v)) => v.parse::<i64>().map_err(|_| {
                                format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer (got {v:?})")
                            })?,
                            t => return Err(unexpected(t, "identifier")),
                        };
                        at += 1;
                        if *op == Token::Gt { Requirement::Gt(key.clone(), n) } else { Requirement::Lt(key.clone(), n) }
                    }
                    t => return Err(unexpected(t, "'=', '!=', '==', 'in', notin'")),
                }
            }
            t => return Err(unexpected(t, "!, identifier, or 'end of string'")),
        };
        out.push(requirement);
        match tokens.get(at) {
            None => return Ok(out),
            Some(Token::Comma) => at += 1,
            t => return Err(unexpected(t, "','")),
        }
    }
}

/// Whether labels satisfy every requirement.
pub fn labels_match(requirements: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    requirements.iter().all(|r| match r {
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::DoesNotExist(k) => !labels.contains_key(k),
        Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
        Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        Requirement::Gt(k, n) => labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
        Requirement::Lt(k, n) => labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
    })
}

/// A `metav1.LabelSelector` (as in a PDB's `spec.selector`) as requirements; `None` when the
/// selector is invalid.
pub fn from_label_selector(selector: &serde_json::Value) -> Option<Vec<Requirement>> {
    let mut out = Vec::new();
    if let Some(m) = selector.get("matchLabels").and_then(|m| m.as_object()) {
        for (k, v) in m {
            out.push(Requirement::In(k.clone(), vec![v.as_str()?.to_string()]));
        }
    }
    for e in selector.get("matchExpressions").and_then(|m| m.as_array()).into_iter().flatten() {
        let key = e.get("key")?.as_str()?.to_string();
        let values: Vec<String> = e
            .get("values")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        out.push(match e.get("operator")?.as_str()? {
            "In" => Requirement::In(key, values),
            "NotIn" => Requirement::NotIn(key, values),
            "Exists" => Requirement::Exists(key),
            "DoesNotExist" => Requirement::DoesNotExist(key),
            _ => return None,
        });
    }
    Some(out)
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// Parses a field selector (`fieldSelector=`), with its backslash escapes.
pub fn parse_fields(input: &str) -> Result<Vec<FieldTerm>, String> {
    let mut terms = Vec::new();
    if input.trim().is_empty() {
        return Ok(terms);
    }
    for raw in split_unescaped(input, ',') {
        let (field, value, negated) = if let Some(i) = find_unescaped(&raw, "!=") {
            (&raw[..i], &raw[i + 2..], true)
        } else if let Some(i) = find_unescaped(&raw, "==") {
            (&raw[..i], &raw[i + 2..], false)
        } else if let Some(i) = find_unescaped(&raw, "=") {
            (&raw[..i], &raw[i + 1..], false)
        } else {
            return Err(format!("invalid selector: '{input}'; can't understand '{raw}'"));
        };
        terms.push(FieldTerm { field: unescape(field), value: unescape(value), negated });
    }
    Ok(terms)
}

fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut escaped = false;
    for c in input.chars() {
        if escaped {
            part.push(c);
            escaped = false;
        } else if c == '\\' {
            part.push(c);
            escaped = true;
        } else if c == sep {
            parts.push(std::mem::take(&mut part));
        } else {
            part.push(c);
        }
    }
    parts.push(part);
    parts
}

fn find_unescaped(term: &str, op: &str) -> Option<usize> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if term[i..].starts_with(op) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_label_grammar() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (web, db)",
            "app notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "app=web,tier=front",
            "n>4",
            "n<6",
            "",
            "app in (web,)",
        ];
        for s in yes {
            assert!(labels_match(&parse_labels(s).expect(s), &l), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web)",
            "missing",
            "!app",
            "app=web,tier=back",
            "n>5",
            "missing in (x)",
        ];
        for s in no {
            assert!(!labels_match(&parse_labels(s).expect(s), &l), "{s}");
        }
        for bad in ["app in web", "=x", "app=(", "app in ()", "-bad=x", "app=web,", "n>x", "a b"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_field_grammar() {
        assert_eq!(
            parse_fields("spec.nodeName=n1,status.phase!=Failed").expect("parses"),
            vec![
                FieldTerm { field: "spec.nodeName".into(), value: "n1".into(), negated: false },
                FieldTerm { field: "status.phase".into(), value: "Failed".into(), negated: true },
            ]
        );
        assert_eq!(parse_fields("a==b").expect("parses")[0].value, "b");
        assert_eq!(parse_fields(r"a=x\,y").expect("parses")[0].value, "x,y");
        assert!(parse_fields("nonsense").is_err());
    }
}
