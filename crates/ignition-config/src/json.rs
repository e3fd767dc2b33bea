//! A JSON parser that keeps byte positions of every value and key, keeps duplicate
//! keys in document order, and reports syntax errors with the exact wording and
//! offsets of Go's `encoding/json` scanner (Ignition prints those).

use crate::report::Marker;

/// A parsed JSON value with its position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    /// Byte index where the value starts.
    pub start: usize,
    /// Byte index just past the value.
    pub end: usize,
}

/// JSON value kinds. Numbers keep their literal text (Go decodes them per target type).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Node>),
    /// Members in document order, duplicates kept.
    Object(Vec<Member>),
    /// An array (`true`) or object (`false`) nested deeper than any schema
    /// field; syntax-checked but not kept, so deep input cannot exhaust the stack.
    Deep(bool),
}

/// One object member.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member {
    pub key: String,
    /// Byte index of the key's opening quote.
    pub key_start: usize,
    pub value: Node,
}

impl Value {
    /// The word Go's `UnmarshalTypeError` uses for this kind of value.
    pub fn go_kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) | Value::Deep(false) => "object",
            Value::Deep(true) => "array",
        }
    }
}

impl Node {
    /// The member that Go's tree keeps for an exact key (the last one).
    pub fn get(&self, key: &str) -> Option<&Member> {
        match &self.value {
            Value::Object(m) => m.iter().rev().find(|m| m.key == key),
            _ => None,
        }
    }
}

/// A syntax error as Go's scanner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub msg: String,
    /// Go's `SyntaxError.Offset`: bytes read when the error was detected.
    pub offset: usize,
}

/// Converts byte indices to vcontext line/column markers.
pub(crate) struct LineIndex {
    line_starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub fn new(src: &[u8]) -> LineIndex {
        let mut line_starts = vec![0];
        for (i, b) in src.iter().enumerate() {
            if *b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        LineIndex {
            line_starts,
            len: src.len(),
        }
    }

    /// The marker of byte `idx`; `line 0 col 0` past the end, as vcontext's
    /// `FixLineColumn` leaves such positions unset.
    pub fn marker(&self, idx: usize) -> Marker {
        if idx >= self.len {
            return Marker { line: 0, col: 0 };
        }
        let line = self.line_starts.partition_point(|s| *s <= idx);
        Marker {
            line,
            col: idx - self.line_starts[line - 1] + 1,
        }
    }
}

/// Parses `src` as one JSON document.
pub(crate) fn parse(src: &[u8]) -> Result<Node, SyntaxError> {
    let mut p = Parser { src, pos: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.pos < src.len() {
        return Err(p.err_at(p.pos, "after top-level value"));
    }
    Ok(v)
}

fn quote_char(c: u8) -> String {
    if c == b'\'' {
        return "'\\''".into();
    }
    if c == b'"' {
        return "'\"'".into();
    }
    // Go: strconv.Quote(string(rune(c))) with the double quotes swapped for single.
    let ch = c as char;
    let inner = match ch {
        '\x07' => "\\a".to_string(),
        '\x08' => "\\b".to_string(),
        '\x0c' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\x0b' => "\\v".to_string(),
        '\\' => "\\\\".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c if (0x80..0xa0).contains(&(c as u32)) => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{inner}'")
}

/// Go's scanner limit on nesting.
const MAX_DEPTH: usize = 10000;

/// Go's string decoding: every byte of an invalid UTF-8 sequence becomes U+FFFD
/// (Rust's lossy conversion would merge a truncated sequence into one).
fn go_lossy(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (ok, rest) = b.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(ok).unwrap_or_default());
                out.push('\u{fffd}');
                b = &rest[1..];
            }
        }
    }
}
/// Nesting kept in the tree; the schema is far shallower than this.
const TREE_DEPTH: usize = 64;

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eof(&self) -> SyntaxError {
        SyntaxError {
            msg: "unexpected end of JSON input".into(),
            offset: self.src.len(),
        }
    }

    fn err_at(&self, i: usize, context: &str) -> SyntaxError {
        SyntaxError {
            msg: format!("invalid character {} {context}", quote_char(self.src[i])),
            offset: i + 1,
        }
    }

    fn peek(&self) -> Result<u8, SyntaxError> {
        self.src.get(self.pos).copied().ok_or_else(|| self.eof())
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let start = self.pos;
        let c = self.peek()?;
        if depth >= TREE_DEPTH && (c == b'[' || c == b'{') {
            self.skip_container(depth)?;
            return Ok(Node {
                value: Value::Deep(c == b'['),
                start,
                end: self.pos,
            });
        }
        let value = match c {
            b'{' => {
                self.pos += 1;
                self.object(depth)?
            }
            b'[' => {
                self.pos += 1;
                self.array(depth)?
            }
            b'"' => Value::String(self.string()?),
            b'-' | b'0'..=b'9' => Value::Number(self.number()?),
            b't' => {
                self.literal("true")?;
                Value::Bool(true)
            }
            b'f' => {
                self.literal("false")?;
                Value::Bool(false)
            }
            b'n' => {
                self.literal("null")?;
                Value::Null
            }
            _ => return Err(self.err_at(self.pos, "looking for beginning of value")),
        };
        Ok(Node {
            value,
            start,
            end: self.pos,
        })
    }

    /// Syntax-checks one array or object without recursion or allocation per
    /// level, with the same errors as the tree-building path.
    fn skip_container(&mut self, depth: usize) -> Result<(), SyntaxError> {
        // Each stack entry is the closing byte expected.
        let mut stack: Vec<u8> = Vec::new();
        loop {
            // Expecting a value here.
            self.ws();
            let c = self.peek()?;
            match c {
                b'[' | b'{' => {
                    if depth + stack.len() + 1 > MAX_DEPTH {
                        return Err(self.err_at(self.pos, "exceeded max depth"));
                    }
                    self.pos += 1;
                    stack.push(if c == b'[' { b']' } else { b'}' });
                    self.ws();
                    let close = *stack.last().unwrap_or(&b']');
                    if self.peek()? == close {
                        self.pos += 1;
                        stack.pop();
                    } else if close == b'}' {
                        self.member_key()?;
                        continue;
                    } else {
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                _ => return Err(self.err_at(self.pos, "looking for beginning of value")),
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&close) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if close == b'}' {
                            self.ws();
                            self.member_key()?;
                        }
                        break;
                    }
                    c if c == close => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ if close == b'}' => {
                        return Err(self.err_at(self.pos, "after object key:value pair"))
                    }
                    _ => return Err(self.err_at(self.pos, "after array element")),
                }
            }
        }
    }

    /// An object key and its colon (for the skipping path).
    fn member_key(&mut self) -> Result<(), SyntaxError> {
        if self.peek()? != b'"' {
            return Err(self.err_at(self.pos, "looking for beginning of object key string"));
        }
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return Err(self.err_at(self.pos, "after object key"));
        }
        self.pos += 1;
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        let mut members = Vec::new();
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return Err(self.err_at(self.pos, "looking for beginning of object key string"));
            }
            let key_start = self.pos;
            let key = self.string()?;
            self.ws();
            if self.peek()? != b':' {
                return Err(self.err_at(self.pos, "after object key"));
            }
            self.pos += 1;
            self.ws();
            let value = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_start,
                value,
            });
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.err_at(self.pos, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.err_at(self.pos, "after array element")),
            }
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), SyntaxError> {
        for (i, want) in word.bytes().enumerate() {
            let c = self.peek()?;
            if c != want {
                let ctx = format!("in literal {word} (expecting {})", quote_char(want));
                debug_assert!(i > 0);
                return Err(self.err_at(self.pos, &ctx));
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        if self.peek()? == b'-' {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err_at(self.pos, "in numeric literal"));
            }
        }
        if self.peek()? == b'0' {
            self.pos += 1;
        } else {
            while matches!(self.src.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err_at(self.pos, "after decimal point in numeric literal"));
            }
            while matches!(self.src.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if let Some(b'e' | b'E') = self.src.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.src.get(self.pos) {
                self.pos += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err_at(self.pos, "in exponent of numeric literal"));
            }
            while matches!(self.src.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        Ok(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let c = self.peek()?;
            let d = (c as char)
                .to_digit(16)
                .ok_or_else(|| self.err_at(self.pos, "in \\u hexadecimal character escape"))?;
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// Parses a string starting at the opening quote; decodes like Go (invalid
    /// UTF-8 and lone surrogates become U+FFFD).
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(go_lossy(&out));
                }
                b'\\' => {
                    self.pos += 1;
                    let e = self.peek()?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            if (0xD800..0xDC00).contains(&hi)
                                && self.src.get(self.pos) == Some(&b'\\')
                                && self.src.get(self.pos + 1) == Some(&b'u')
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                    char::from_u32(cp).unwrap_or('\u{fffd}')
                                } else {
                                    // Go emits U+FFFD for the lone high surrogate and
                                    // decodes the next escape on its own.
                                    self.pos = save;
                                    '\u{fffd}'
                                }
                            } else {
                                char::from_u32(hi).unwrap_or('\u{fffd}')
                            }
                        }
                        _ => return Err(self.err_at(self.pos - 1, "in string escape code")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(self.err_at(self.pos, "in string literal")),
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> SyntaxError {
        parse(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn go_messages() {
        assert_eq!(
            err("{\"a\": 1,}").msg,
            "invalid character '}' looking for beginning of object key string"
        );
        assert_eq!(err("{\"a\": 1,}").offset, 9);
        assert_eq!(err("").msg, "unexpected end of JSON input");
        assert_eq!(
            err("{\"a\" 1}").msg,
            "invalid character '1' after object key"
        );
        assert_eq!(
            err("{\"a\":1 \"b\"}").msg,
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            err("[1 2]").msg,
            "invalid character '2' after array element"
        );
        assert_eq!(
            err("{} x").msg,
            "invalid character 'x' after top-level value"
        );
        assert_eq!(
            err("tru ").msg,
            "invalid character ' ' in literal true (expecting 'e')"
        );
        assert_eq!(err("-x").msg, "invalid character 'x' in numeric literal");
        assert_eq!(
            err("\"\\q\"").msg,
            "invalid character 'q' in string escape code"
        );
        assert_eq!(err("01").msg, "invalid character '1' after top-level value");
        assert_eq!(
            err("\"a\nb\"").msg,
            "invalid character '\\n' in string literal"
        );
    }

    #[test]
    fn deep_values_are_checked_not_kept() {
        let deep =
            |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n));
        assert!(matches!(
            parse(deep("[", "]", 200).as_bytes()).unwrap().value,
            Value::Array(_)
        ));
        assert_eq!(
            err(&deep("[", "]", 10001)).msg,
            "invalid character '[' exceeded max depth"
        );
        assert!(parse(deep("[", "]", 10000).as_bytes()).is_ok());
        assert!(parse(deep("{\"a\":", "}", 300).replace(":}", ":1}").as_bytes()).is_ok());
        let mut bad = deep("[", "]", 100);
        bad.insert(150, 'x');
        assert_eq!(err(&bad).msg, "invalid character 'x' after array element");
        let mut bad = deep("{\"a\":", "}", 100).replace(":}", ":1}");
        bad.insert(bad.len() - 3, ',');
        assert_eq!(
            err(&bad).msg,
            "invalid character '}' looking for beginning of object key string"
        );
        assert_eq!(
            err(&format!("{}1 2", "[".repeat(70))).msg,
            "invalid character '2' after array element"
        );
        assert_eq!(err(&"[".repeat(70)).msg, "unexpected end of JSON input");
    }

    #[test]
    fn positions_and_duplicates() {
        let n = parse(b"{\n \"a\": [1, \"x\"],\n \"a\": null}").unwrap();
        let m = n.get("a").unwrap();
        assert_eq!(m.value.value, Value::Null);
        let li = LineIndex::new(b"{\n \"a\": [1, \"x\"],\n \"a\": null}");
        assert_eq!(li.marker(m.key_start), Marker { line: 3, col: 2 });
        assert_eq!(li.marker(100), Marker { line: 0, col: 0 });
        let s = parse(b"\"\xf0\x9f\x98\"").unwrap();
        assert_eq!(s.value, Value::String("\u{fffd}\u{fffd}\u{fffd}".into()));
        let s = parse(br#""\ud83d\ude00 \u00e9""#).unwrap();
        assert_eq!(s.value, Value::String("\u{1F600} \u{e9}".into()));
    }
}
