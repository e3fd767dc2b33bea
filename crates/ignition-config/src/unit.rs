//! systemd unit file lexing as done by go-systemd's `unit.DeserializeOptions`,
//! which Ignition uses to validate unit and drop-in contents (its error texts end
//! up in Ignition's messages).

/// One `Name=Value` option of a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitOption {
    pub section: String,
    pub name: String,
    pub value: String,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// Go's `ReadRune`: one UTF-8 character, U+FFFD for an invalid byte.
    fn read_char(&mut self) -> Option<char> {
        let rest = self.s.get(self.pos..)?;
        let first = *rest.first()?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        match rest.get(..width).and_then(|b| std::str::from_utf8(b).ok()) {
            Some(s) => {
                self.pos += width;
                s.chars().next()
            }
            None => {
                self.pos += 1;
                Some('\u{fffd}')
            }
        }
    }

    /// Reads through the next `\n` (or to EOF); strips a trailing `\n`/`\r\n`.
    fn read_line(&mut self) -> (String, bool) {
        let start = self.pos;
        let (end, next, found) = match self.s[start..].iter().position(|b| *b == b'\n') {
            Some(i) => (start + i, start + i + 1, true),
            None => (self.s.len(), self.s.len(), false),
        };
        self.pos = next;
        let mut line = &self.s[start..end];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        (String::from_utf8_lossy(line).into_owned(), found)
    }
}

/// Parses unit contents; `Err` holds go-systemd's error text.
pub(crate) fn deserialize(contents: &str) -> Result<Vec<UnitOption>, String> {
    let mut l = Lexer {
        s: contents.as_bytes(),
        pos: 0,
    };
    let mut opts = Vec::new();
    let mut section: Option<String> = None;
    loop {
        let before = l.pos;
        let Some(c) = l.read_char() else {
            return Ok(opts);
        };
        let sec = match &section {
            None => {
                // Before the first section everything but `[` and comments is skipped.
                if c == '[' {
                    None
                } else {
                    if c == '#' || c == ';' {
                        l.read_line();
                    }
                    continue;
                }
            }
            Some(s) => Some(s.clone()),
        };
        if let Some(sec) = sec {
            if c.is_whitespace() {
                continue;
            }
            if c == '#' || c == ';' {
                l.read_line();
                continue;
            }
            if c != '[' {
                // option name
                l.pos = before;
                let mut name = String::new();
                loop {
                    let Some(r) = l.read_char() else {
                        return Err("EOF".into());
                    };
                    if r == '\n' || r == '\r' {
                        return Err(
                            "unexpected newline encountered while parsing option name".into()
                        );
                    }
                    if r == '=' {
                        break;
                    }
                    name.push(r);
                }
                let name = name.trim().to_string();
                let mut value = String::new();
                loop {
                    let (line, found_eol) = l.read_line();
                    if line.trim().is_empty() {
                        break;
                    }
                    value.push_str(&line);
                    if !line.ends_with('\\') {
                        break;
                    }
                    if found_eol {
                        value.push('\n');
                    } else {
                        break;
                    }
                }
                opts.push(UnitOption {
                    section: sec,
                    name,
                    value: value.trim().to_string(),
                });
                continue;
            }
        }
        // section name
        let rest = &l.s[l.pos..];
        let Some(end) = rest.iter().position(|b| *b == b']') else {
            return Err("unable to find end of section".into());
        };
        let name = String::from_utf8_lossy(&rest[..end]).into_owned();
        l.pos += end + 1;
        let (garbage, _) = l.read_line();
        let garbage = garbage.trim();
        if !garbage.is_empty() {
            return Err(format!(
                "found garbage after section name {name}: {garbage:?}"
            ));
        }
        section = Some(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_errors() {
        let o = deserialize("[Unit]\nDescription=x\n\n[Install]\nWantedBy=multi-user.target\n")
            .unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].section, "Install");
        assert_eq!(
            deserialize("[Service\nExecStart=/bin/true\n").unwrap_err(),
            "unable to find end of section"
        );
        assert_eq!(deserialize("[Service]\nExecStart").unwrap_err(), "EOF");
        assert!(deserialize("# comment\nfoo\n").unwrap().is_empty());
        let o = deserialize("[S]\nA=b \\\n c\n").unwrap();
        assert_eq!(o[0].value, "b \\\n c");
    }
}
