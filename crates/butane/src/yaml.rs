//! A YAML node tree with positions, built the way gopkg.in/yaml.v3 sees a document.
//!
//! Butane decodes with yaml.v3 and reports positions from yaml.v3's node tree
//! (coreos/vcontext `yaml/yaml.go`), so this module reproduces what matters of
//! both: 1-based line/column of every node, the first document only, aliases
//! expanded to their anchored node, and yaml.v3's error texts for the syntax
//! errors users actually hit.
//!
//! The event parser is yaml-rust2: it is pure Rust, YAML 1.2, and its events
//! carry char-based markers. Two of its markers differ from libyaml's and are
//! corrected here: a block mapping's start marker (we use the first key, as
//! libyaml does) and an empty (null) value (libyaml puts it right after the
//! `key:` colon, yaml-rust2 at the next token).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// The canonical prefix of the YAML core schema tags (`!!str` etc.).
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// One YAML node with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// 1-based line of the node's first character.
    pub line: usize,
    /// 1-based column of the node's first character.
    pub col: usize,
    /// Explicit tag in short form (`!!str`, `!!int`, or a local `!foo`).
    pub tag: Option<String>,
}

/// The three YAML node kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars.
    Scalar { value: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, keys in document order (duplicates kept: decoding reports them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// True for a null scalar as yaml.v3 resolves it (`~`, `null`, empty...).
    pub fn is_null(&self) -> bool {
        match &self.kind {
            NodeKind::Scalar { value, plain } => {
                self.tag.as_deref().map_or(*plain, |t| t == "!!null")
                    && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// yaml.v3's short tag of the node after resolution (`!!str`, `!!int`, `!!map`...).
    pub fn short_tag(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "!!seq",
            NodeKind::Map(_) => "!!map",
            NodeKind::Scalar { value, plain } => match self.tag.as_deref() {
                Some("!!str") => "!!str",
                Some("!!int") => "!!int",
                Some("!!bool") => "!!bool",
                Some("!!float") => "!!float",
                Some("!!null") => "!!null",
                Some("!!binary") => "!!binary",
                Some("!!timestamp") => "!!timestamp",
                Some(_) => "!!str",
                None if !*plain => "!!str",
                None => crate::scalar::resolve(value).short_tag(),
            },
        }
    }
}

/// A syntax error, already phrased like yaml.v3 (`yaml: line 4: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses the first YAML document of `input`. `Ok(None)` means an empty stream.
pub fn parse(input: &str) -> Result<Option<Node>, SyntaxError> {
    let chars: Vec<char> = input.chars().collect();
    let mut builder = Builder {
        parser: Parser::new_from_str(input),
        chars: &chars,
        anchors: HashMap::new(),
        budget: 0,
        open: Vec::new(),
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    chars: &'a [char],
    anchors: HashMap<usize, Node>,
    /// Nodes created so far, aliases counted in full (yaml.v3 refuses alias bombs).
    budget: usize,
    /// Start lines (1-based) of the collections being parsed, for error lines.
    open: Vec<usize>,
}

/// Parse state of a pending value, so that an empty value can be placed after its key.
enum Slot {
    /// Top of document or sequence item following `-` at this char index.
    Plain,
    /// A mapping value whose key started at this char index.
    AfterKey(usize),
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|e| self.syntax_error(&e))
    }

    /// Maps yaml-rust2's errors onto the libyaml/yaml.v3 texts (see yaml.v3
    /// `parser.fail`: scanner errors report the 1-based line, parser errors the
    /// 0-based line of the enclosing collection).
    fn syntax_error(&self, e: &ScanError) -> SyntaxError {
        let info = e.info();
        let line = e.marker().line();
        let (line, msg) = if info.contains("tab") {
            (
                line,
                "found character that cannot start any token".to_string(),
            )
        } else if info.contains("quoted scalar") {
            (line, "found unexpected end of stream".to_string())
        } else if let Some(rest) = info.strip_prefix("while parsing a block collection, ") {
            let ctx = self.open.last().copied().unwrap_or(line + 1);
            (ctx.saturating_sub(1), rest.to_string())
        } else if let Some(rest) = info.strip_prefix("while parsing a block mapping, ") {
            let ctx = self.open.last().copied().unwrap_or(line + 1);
            (ctx.saturating_sub(1), rest.to_string())
        } else if info.contains("mapping values are not allowed") {
            (
                line,
                "mapping values are not allowed in this context".to_string(),
            )
        } else {
            let msg = info
                .split_once(", ")
                .filter(|(h, _)| h.starts_with("while "))
                .map_or(info, |(_, r)| r);
            (line, msg.to_string())
        };
        if line == 0 {
            SyntaxError(format!("yaml: {msg}"))
        } else {
            SyntaxError(format!("yaml: line {line}: {msg}"))
        }
    }

    fn document(&mut self) -> Result<Option<Node>, SyntaxError> {
        loop {
            let (ev, _) = self.next()?;
            match ev {
                Event::StreamStart => continue,
                Event::StreamEnd => return Ok(None),
                Event::DocumentStart => break,
                _ => {
                    return Err(SyntaxError(
                        "yaml: did not find expected <document start>".into(),
                    ))
                }
            }
        }
        let (ev, mark) = self.next()?;
        if matches!(ev, Event::DocumentEnd) {
            return Ok(None);
        }
        let node = self.node(ev, mark, Slot::Plain)?;
        // yaml.v3 Unmarshal reads exactly one document; what follows is never parsed.
        Ok(Some(node))
    }

    fn node(&mut self, ev: Event, mark: Marker, slot: Slot) -> Result<Node, SyntaxError> {
        let (line, col) = (mark.line(), mark.col() + 1);
        match ev {
            Event::Alias(id) => {
                let size = self.anchors.get(&id).map_or(1, count_nodes);
                self.budget += size;
                if self.budget > MAX_NODES {
                    return Err(SyntaxError(
                        "yaml: document contains excessive aliasing".into(),
                    ));
                }
                Ok(self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: NodeKind::Scalar {
                        value: String::new(),
                        plain: true,
                    },
                    line,
                    col,
                    tag: None,
                }))
            }
            Event::Scalar(value, style, anchor, tag) => {
                let plain = style == TScalarStyle::Plain;
                let (line, col) = if plain && value.is_empty() && tag.is_none() {
                    self.empty_position(mark, slot)
                } else if matches!(style, TScalarStyle::Literal | TScalarStyle::Folded) {
                    self.block_indicator(mark).unwrap_or((line, col))
                } else {
                    (line, col)
                };
                let node = Node {
                    kind: NodeKind::Scalar { value, plain },
                    line,
                    col,
                    tag: tag.map(short_tag),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceStart(anchor, tag) => {
                self.open.push(line);
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, m, Slot::Plain)?);
                }
                self.open.pop();
                let node = Node {
                    kind: NodeKind::Seq(items),
                    line,
                    col,
                    tag: tag.map(short_tag),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, tag) => {
                self.open.push(line);
                let mut entries = Vec::new();
                let mut first: Option<Marker> = None;
                loop {
                    let (ev, m) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    if first.is_none() {
                        first = Some(m);
                    }
                    let key = self.node(ev, m, Slot::Plain)?;
                    let (vev, vm) = self.next()?;
                    let value = self.node(vev, vm, Slot::AfterKey(m.index()))?;
                    entries.push((key, value));
                }
                self.open.pop();
                // libyaml starts a block mapping at its first key; yaml-rust2 reports
                // a later marker there, while flow mappings start at `{` in both.
                let (line, col) = match first {
                    Some(f) if f.index() < mark.index() => (f.line(), f.col() + 1),
                    _ => (line, col),
                };
                let node = Node {
                    kind: NodeKind::Map(entries),
                    line,
                    col,
                    tag: tag.map(short_tag),
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            other => Err(SyntaxError(format!("yaml: unexpected event {other:?}"))),
        }
    }

    /// Position of an empty value: libyaml places it just after the `:` of its key.
    fn empty_position(&self, mark: Marker, slot: Slot) -> (usize, usize) {
        let Slot::AfterKey(start) = slot else {
            return (mark.line(), mark.col() + 1);
        };
        let mut i = start;
        while i < self.chars.len() {
            if self.chars[i] == ':'
                && self
                    .chars
                    .get(i + 1)
                    .is_none_or(|c| c.is_whitespace() || matches!(c, ',' | '}' | ']'))
            {
                return self.line_col(i + 1);
            }
            i += 1;
        }
        (mark.line(), mark.col() + 1)
    }

    /// libyaml places a block scalar at its `|`/`>` indicator; yaml-rust2 at
    /// the first content character. Walk back over the header to the indicator.
    fn block_indicator(&self, mark: Marker) -> Option<(usize, usize)> {
        let mut i = mark.index().min(self.chars.len());
        while i > 0 && self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0
            && (self.chars[i - 1] == '-'
                || self.chars[i - 1] == '+'
                || self.chars[i - 1].is_ascii_digit())
        {
            i -= 1;
        }
        (i > 0 && matches!(self.chars[i - 1], '|' | '>')).then(|| self.line_col(i - 1))
    }

    fn line_col(&self, index: usize) -> (usize, usize) {
        let mut line = 1;
        let mut col = 1;
        for &c in &self.chars[..index.min(self.chars.len())] {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        (line, col)
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }
}

/// Upper bound on expanded nodes; a real config has a few thousand at most.
const MAX_NODES: usize = 1_000_000;

fn count_nodes(n: &Node) -> usize {
    1 + match &n.kind {
        NodeKind::Scalar { .. } => 0,
        NodeKind::Seq(items) => items.iter().map(count_nodes).sum(),
        NodeKind::Map(entries) => entries
            .iter()
            .map(|(k, v)| count_nodes(k) + count_nodes(v))
            .sum(),
    }
}

fn short_tag(tag: Tag) -> String {
    if tag.handle == CORE_TAG_PREFIX || tag.handle == "!!" {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(n: &Node) -> &Vec<(Node, Node)> {
        match &n.kind {
            NodeKind::Map(m) => m,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_are_one_based_like_yaml_v3() {
        let n = parse("variant: fcos\nstorage:\n  files:\n    - path: /x\n      mode: 0644\n")
            .unwrap()
            .unwrap();
        assert_eq!((n.line, n.col), (1, 1));
        let root = map(&n);
        assert_eq!((root[0].1.line, root[0].1.col), (1, 10));
        let storage = &root[1].1;
        assert_eq!((storage.line, storage.col), (3, 3));
        let files = &map(storage)[0].1;
        assert_eq!((files.line, files.col), (4, 5));
        let NodeKind::Seq(items) = &files.kind else {
            panic!()
        };
        assert_eq!((items[0].line, items[0].col), (4, 7));
        let mode = &map(&items[0])[1].1;
        assert_eq!((mode.line, mode.col), (5, 13));
    }

    #[test]
    fn null_value_sits_after_the_colon() {
        let n = parse("variant: fcos\nstorage:\n").unwrap().unwrap();
        let v = &map(&n)[1].1;
        assert!(v.is_null());
        assert_eq!((v.line, v.col), (2, 9));
    }

    #[test]
    fn only_first_document_and_aliases() {
        let n = parse("a: &x [1, 2]\nb: *x\n---\nc: [\n").unwrap().unwrap();
        let m = map(&n);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1, m[1].1);
        assert!(parse("").unwrap().is_none());
    }

    #[test]
    fn syntax_errors_use_yaml_v3_wording() {
        let e = parse("a: b\nstorage:\n\tfiles: []\n").unwrap_err();
        assert_eq!(
            e.0,
            "yaml: line 3: found character that cannot start any token"
        );
        let e = parse("a:\n  b:\n    - x: 1\n     y: 2\n").unwrap_err();
        assert_eq!(e.0, "yaml: line 2: did not find expected '-' indicator");
    }

    #[test]
    fn block_scalars_sit_at_their_indicator() {
        let n = parse("a:\n  b: |-\n    text\n  c: >\n\n    folded\n")
            .unwrap()
            .unwrap();
        let inner = &map(&n)[0].1;
        let b = &map(inner)[0].1;
        assert_eq!((b.line, b.col), (2, 6));
        let c = &map(inner)[1].1;
        assert_eq!((c.line, c.col), (4, 6));
    }

    #[test]
    fn explicit_tags_are_shortened() {
        let n = parse("a: !!str 0644\n").unwrap().unwrap();
        assert_eq!(map(&n)[0].1.tag.as_deref(), Some("!!str"));
        assert_eq!(map(&n)[0].1.short_tag(), "!!str");
    }
}
