//! The URL checks Ignition applies: Go's `net/url.Parse` acceptance rules, the
//! RFC 2397 data-URL parser Ignition uses (vincent-petithory/dataurl, whose error
//! texts Ignition reports verbatim) and the AWS SDK's ARN parser.

/// The parts of a URL that validation looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GoUrl {
    /// Lower-cased scheme ("" when absent).
    pub scheme: String,
    /// Opaque part (`scheme:opaque`, no leading slash).
    pub opaque: String,
    /// Host (with port), unescaped.
    pub host: String,
    /// Path, unescaped.
    pub path: String,
    /// Raw query (after `?`).
    pub raw_query: String,
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn unhex(c: u8) -> u8 {
    (c as char).to_digit(16).unwrap_or(0) as u8
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Path,
    Host,
    Fragment,
    UserPassword,
    Query,
}

/// Go's `shouldEscape` for the modes that matter for rejection.
fn host_char_ok(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_'
                | b'.'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
                | b'<'
                | b'>'
                | b'"'
        )
}

/// Go's `unescape`: `None` where it returns an error.
fn unescape(s: &str, mode: Mode) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len() {
                    return None;
                }
                if !is_hex(b[i + 1]) || !is_hex(b[i + 2]) {
                    return None;
                }
                if mode == Mode::Host && unhex(b[i + 1]) < 8 && &s[i..i + 3] != "%25" {
                    return None;
                }
                out.push(unhex(b[i + 1]) << 4 | unhex(b[i + 2]));
                i += 3;
            }
            b'+' => {
                out.push(if mode == Mode::Query { b' ' } else { b'+' });
                i += 1;
            }
            c => {
                if mode == Mode::Host && c < 0x80 && !host_char_ok(c) {
                    return None;
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn valid_optional_port(p: &str) -> bool {
    if p.is_empty() {
        return true;
    }
    let Some(rest) = p.strip_prefix(':') else {
        return false;
    };
    rest.bytes().all(|c| c.is_ascii_digit())
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
            || c >= 0x80
    })
}

fn parse_host(host: &str) -> Option<String> {
    if let Some(stripped) = host.strip_prefix('[') {
        let i = stripped.rfind(']')?;
        if !valid_optional_port(&stripped[i + 1..]) {
            return None;
        }
        // IPv6 literal (and zone) are kept as given apart from escapes.
        return unescape(host, Mode::Path);
    } else if let Some(i) = host.rfind(':') {
        if !valid_optional_port(&host[i..]) {
            return None;
        }
    }
    unescape(host, Mode::Host)
}

/// Go's `url.Parse`: `None` where Go returns an error.
pub(crate) fn parse(raw: &str) -> Option<GoUrl> {
    let (u, frag) = match raw.split_once('#') {
        Some((a, b)) => (a, Some(b)),
        None => (raw, None),
    };
    if u.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return None;
    }
    let mut url = GoUrl::default();
    if u == "*" {
        url.path = "*".into();
        return Some(url);
    }
    // getScheme
    let mut rest = u;
    for (i, c) in u.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' => {
                if i == 0 {
                    break;
                }
            }
            b':' => {
                if i == 0 {
                    return None;
                }
                url.scheme = u[..i].to_ascii_lowercase();
                rest = &u[i + 1..];
                break;
            }
            _ => break,
        }
    }
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((a, q)) = rest.split_once('?') {
        url.raw_query = q.to_string();
        rest = a;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            url.opaque = rest.to_string();
            return finish(url, frag);
        }
        let segment = rest.split('/').next().unwrap_or("");
        if segment.contains(':') {
            return None;
        }
    }
    if (!url.scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
        let authority_and_path = &rest[2..];
        let (authority, path) = match authority_and_path.find('/') {
            Some(i) => (&authority_and_path[..i], &authority_and_path[i..]),
            None => (authority_and_path, ""),
        };
        match authority.rfind('@') {
            Some(i) => {
                url.host = parse_host(&authority[i + 1..])?;
                let userinfo = &authority[..i];
                if !valid_userinfo(userinfo) {
                    return None;
                }
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                unescape(user, Mode::UserPassword)?;
                unescape(pass, Mode::UserPassword)?;
            }
            None => url.host = parse_host(authority)?,
        }
        rest = path;
    }
    url.path = unescape(rest, Mode::Path)?;
    finish(url, frag)
}

fn finish(url: GoUrl, frag: Option<&str>) -> Option<GoUrl> {
    if let Some(f) = frag {
        unescape(f, Mode::Fragment)?;
    }
    Some(url)
}

impl GoUrl {
    /// The values of query key `key` (Go `u.Query()[key]`), `None` if absent.
    pub fn query_values(&self, key: &str) -> Option<Vec<String>> {
        let mut found: Option<Vec<String>> = None;
        for part in self.raw_query.split('&') {
            if part.is_empty() || part.contains(';') {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (Some(k), Some(v)) = (unescape(k, Mode::Query), unescape(v, Mode::Query)) else {
                continue;
            };
            if k == key {
                found.get_or_insert_with(Vec::new).push(v);
            }
        }
        found
    }
}

/// vincent-petithory/dataurl `DecodeString`: `Err(message)` on failure.
pub(crate) fn check_data_url(s: &str) -> Result<(), String> {
    DataLexer::new(s).run()
}

fn is_token_rune(r: char) -> bool {
    (r as u32) <= 0x7f
        && !r.is_control()
        && !r.is_whitespace()
        && !matches!(
            r,
            '(' | ')'
                | '<'
                | '>'
                | '@'
                | ','
                | ';'
                | ':'
                | '\\'
                | '"'
                | '/'
                | '['
                | ']'
                | '?'
                | '='
        )
}

fn is_url_char_rune(r: char) -> bool {
    let c = r as u32;
    c <= 0x7f
        && !(c <= 0x1f || c == 0x7f)
        && !matches!(
            r,
            ' ' | '<' | '>' | '#' | '"' | '{' | '}' | '|' | '\\' | '^' | '[' | ']' | '`'
        )
}

fn is_base64_rune(r: char) -> bool {
    r.is_ascii_alphanumeric() || r == '+' || r == '/' || r == '='
}

struct DataLexer<'a> {
    chars: Vec<char>,
    pos: usize,
    start: usize,
    src: &'a str,
}

impl<'a> DataLexer<'a> {
    fn new(src: &'a str) -> Self {
        DataLexer {
            chars: src.chars().collect(),
            pos: 0,
            start: 0,
            src,
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn backup(&mut self) {
        self.pos -= 1;
    }

    fn text(&self) -> String {
        self.chars[self.start..self.pos].iter().collect()
    }

    fn run(&mut self) -> Result<(), String> {
        if !self.src.starts_with("data:") {
            return Err("missing data prefix".into());
        }
        self.pos = 5;
        self.start = 5;
        let mut base64 = false;
        // After the prefix: media type, parameters, or the comma.
        let mut state = 0u8; // 0 = after prefix / after value, 1 = after subtype or param value
        match self.next() {
            Some(';') => self.backup(),
            Some(',') => self.backup(),
            None => return Err("missing comma before data".into()),
            Some(r) => {
                let x_token = (r == 'x' || r == 'X') && self.chars.get(self.pos) == Some(&'-');
                if x_token {
                    self.pos += 1;
                } else if !is_token_rune(r) {
                    return Err("invalid character after data prefix".into());
                }
                loop {
                    match self.next() {
                        Some('/') => {
                            self.backup();
                            let t = self.text();
                            if !x_token
                                && ![
                                    "text",
                                    "image",
                                    "audio",
                                    "video",
                                    "application",
                                    "message",
                                    "multipart",
                                ]
                                .iter()
                                .any(|p| t.starts_with(p))
                            {
                                return Err("invalid media type".into());
                            }
                            break;
                        }
                        None => return Err("missing media type slash".into()),
                        Some(r) if is_token_rune(r) => {}
                        Some(_) => return Err("invalid character for media type".into()),
                    }
                }
                self.next(); // the slash
                loop {
                    match self.next() {
                        Some(';') | Some(',') => {
                            self.backup();
                            break;
                        }
                        None => return Err("incomplete media type".into()),
                        Some(r) if is_token_rune(r) => {}
                        Some(_) => return Err("invalid character for media subtype".into()),
                    }
                }
                state = 1;
            }
        }
        let _ = state;
        // Parameters until the data comma.
        loop {
            match self.next() {
                Some(',') => break,
                Some(';') => {}
                None => return Err("missing comma before data".into()),
                Some(_) => return Err("expected semicolon or comma".into()),
            }
            // after semicolon
            match self.next() {
                None => return Err("unterminated parameter sequence".into()),
                Some('=') | Some(',') => return Err("unterminated parameter sequence".into()),
                Some(r) if is_token_rune(r) => self.backup(),
                Some(_) => return Err("invalid character for parameter attribute".into()),
            }
            self.start = self.pos;
            let mut is_enc = false;
            loop {
                match self.next() {
                    Some('=') => {
                        self.backup();
                        break;
                    }
                    Some(',') => {
                        self.backup();
                        is_enc = true;
                        break;
                    }
                    None => return Err("unterminated parameter sequence".into()),
                    Some(r) if is_token_rune(r) => {}
                    Some(_) => return Err("invalid character for parameter attribute".into()),
                }
            }
            if is_enc {
                let v = self.text();
                if v != "base64" {
                    return Err(format!("expected base64, got {v}"));
                }
                base64 = true;
                continue;
            }
            self.next(); // '='
            self.start = self.pos;
            match self.next() {
                Some('"') => {
                    self.start = self.pos;
                    loop {
                        match self.next() {
                            None => return Err("unclosed quoted string".into()),
                            Some('\\') => match self.next() {
                                None => return Err("unexpected eof".into()),
                                Some(r) if (r as u32) <= 0x7f => {}
                                Some(_) => return Err("invalid escaped character".into()),
                            },
                            Some('"') => {
                                let raw = self.chars[self.start..self.pos - 1]
                                    .iter()
                                    .collect::<String>();
                                if !go_unquote_ok(&raw) {
                                    return Err("invalid syntax".into());
                                }
                                break;
                            }
                            Some(r) if (r as u32) <= 0x7f => {}
                            Some(_) => return Err("invalid character for parameter value".into()),
                        }
                    }
                }
                None => return Err("missing comma before data".into()),
                Some(r) if is_token_rune(r) => {
                    loop {
                        match self.next() {
                            Some(';') | Some(',') => {
                                self.backup();
                                break;
                            }
                            None => return Err("missing comma before data".into()),
                            Some(r) if is_token_rune(r) => {}
                            Some(_) => return Err("invalid character for parameter value".into()),
                        }
                    }
                    rfc2396_unescape(&self.text())?;
                }
                Some(_) => return Err("invalid character for parameter value".into()),
            }
        }
        // Data.
        self.start = self.pos;
        loop {
            match self.next() {
                None => break,
                Some(r) if base64 && is_base64_rune(r) => {}
                Some(r) if !base64 && is_url_char_rune(r) => {}
                Some(_) => return Err("invalid data character".into()),
            }
        }
        let data = self.text();
        if data.is_empty() {
            return Ok(());
        }
        if base64 {
            go_base64_check(&data)
        } else {
            rfc2396_unescape(&data).map(|_| ())
        }
    }
}

fn go_unquote_ok(s: &str) -> bool {
    // strconv.Unquote of a double-quoted string: escapes must be valid Go escapes.
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '\\' {
            let Some(&e) = b.get(i + 1) else { return false };
            let need_hex = match e {
                'a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\' | '"' => 0,
                'x' => 2,
                'u' => 4,
                'U' => 8,
                '0'..='7' => {
                    if b.len() < i + 4 || !b[i + 1..i + 4].iter().all(|c| ('0'..='7').contains(c)) {
                        return false;
                    }
                    i += 4;
                    continue;
                }
                _ => return false,
            };
            if b.len() < i + 2 + need_hex
                || !b[i + 2..i + 2 + need_hex]
                    .iter()
                    .all(|c| c.is_ascii_hexdigit())
            {
                return false;
            }
            i += 2 + need_hex;
        } else if b[i] == '"' || b[i] == '\n' {
            return false;
        } else {
            i += 1;
        }
    }
    true
}

fn rfc2396_unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] >= 0x80 {
            return Err("rfc2396: non-ASCII char detected".into());
        }
        if b[i] == b'%' {
            for k in 1..=2 {
                match b.get(i + k) {
                    None => return Err("rfc2396: unexpected end of unescape sequence".into()),
                    // upstream formats the '%' rune here, not the bad byte
                    Some(c) if !is_hex(*c) => {
                        return Err("rfc2396: invalid char 0x25 in unescape sequence".into())
                    }
                    _ => {}
                }
            }
            out.push(unhex(b[i + 1]) * 16 + unhex(b[i + 2]));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Go's `base64.StdEncoding.DecodeString` acceptance (strict padding).
fn go_base64_check(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let err = |i: usize| Err(format!("illegal base64 data at input byte {i}"));
    let mut i = 0;
    while i < b.len() {
        let mut quantum = 0;
        while quantum < 4 {
            if i == b.len() {
                if quantum == 0 {
                    return Ok(());
                }
                return err(i - quantum);
            }
            let c = b[i];
            if c == b'=' {
                // padding: only in the last quantum, after at least 2 chars
                if quantum < 2 {
                    return err(i);
                }
                let pad_needed = 4 - quantum;
                for k in 0..pad_needed {
                    if b.get(i + k) != Some(&b'=') {
                        return err(i + k.min(b.len() - i));
                    }
                }
                if i + pad_needed != b.len() {
                    return err(i + pad_needed);
                }
                return Ok(());
            }
            if !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/') {
                return err(i);
            }
            quantum += 1;
            i += 1;
        }
    }
    Ok(())
}

/// The result of checking an `arn:` URL like Ignition 3.4+.
pub(crate) enum ArnCheck {
    Ok,
    /// Not an S3 ARN with bucket and key.
    InvalidS3Arn,
    /// The ARN parser's own error text.
    ParseError(&'static str),
}

/// aws-sdk-go-v2 `arn.IsARN`/`arn.Parse` plus Ignition's S3 checks, on
/// `scheme:opaque` (the query is not part of it).
pub(crate) fn check_s3_arn(full: &str) -> ArnCheck {
    if !(full.starts_with("arn:") && full.matches(':').count() >= 5) {
        return ArnCheck::InvalidS3Arn;
    }
    let sections: Vec<&str> = full.splitn(6, ':').collect();
    if sections[1].is_empty() {
        return ArnCheck::ParseError("arn: partition not set");
    }
    if sections[2].is_empty() {
        return ArnCheck::ParseError("arn: service not set");
    }
    if sections[5].is_empty() {
        return ArnCheck::ParseError("arn: resource not set");
    }
    if sections[2] != "s3" {
        return ArnCheck::InvalidS3Arn;
    }
    let slashes = full.split('/').count();
    if sections[5].starts_with("accesspoint/") {
        if slashes < 3 {
            return ArnCheck::InvalidS3Arn;
        }
    } else if slashes < 2 {
        return ArnCheck::InvalidS3Arn;
    }
    ArnCheck::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_url_parse() {
        assert!(parse("%zz").is_none());
        assert!(parse(":foo").is_none());
        assert!(parse("a:b/c").is_some());
        assert!(parse("1a:b").is_none());
        assert!(parse("http://host:port/").is_none());
        assert!(parse("http://[::1]:80/x").is_some());
        let u = parse("S3://bucket/key?versionId=").unwrap();
        assert_eq!(u.scheme, "s3");
        assert_eq!(u.query_values("versionId"), Some(vec![String::new()]));
        let u = parse("arn:aws:s3:::bucket/key").unwrap();
        assert_eq!(u.opaque, "aws:s3:::bucket/key");
        assert!(parse("http://a b/").is_none());
        assert!(parse("http://x/\x01").is_none());
    }

    #[test]
    fn data_urls() {
        assert_eq!(
            check_data_url("data:xyz"),
            Err("missing media type slash".into())
        );
        assert_eq!(check_data_url("data:,hello%20world"), Ok(()));
        assert_eq!(check_data_url("data:text/plain;base64,aGk="), Ok(()));
        assert_eq!(
            check_data_url("data:;base64,aGk"),
            Err("illegal base64 data at input byte 0".into())
        );
        assert_eq!(
            check_data_url("data:foo/bar,x"),
            Err("invalid media type".into())
        );
        assert_eq!(check_data_url("data:text/plain;charset=utf-8,x"), Ok(()));
        assert!(check_data_url("data:,a%zz").is_err());
        assert_eq!(
            check_data_url("data:text/plain"),
            Err("incomplete media type".into())
        );
    }

    #[test]
    fn arns() {
        assert!(matches!(
            check_s3_arn("arn:aws:s3:::bucket/key"),
            ArnCheck::Ok
        ));
        assert!(matches!(
            check_s3_arn("arn:aws:s3:::bucket"),
            ArnCheck::InvalidS3Arn
        ));
        assert!(matches!(
            check_s3_arn("arn:aws:iam:::role/x"),
            ArnCheck::InvalidS3Arn
        ));
        assert!(matches!(
            check_s3_arn("arn:aws:s3:us-east-1:123:accesspoint/ap/object/key"),
            ArnCheck::Ok
        ));
    }
}
