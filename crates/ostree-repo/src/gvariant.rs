//! A small GVariant (GLib serialisation format 1.0) encoder and decoder.
//!
//! OSTree hashes the serialized bytes of its metadata objects, so the encoder
//! must emit exactly GLib's *normal form*: zero padding, framing offsets of the
//! smallest width that fits, and framing offsets even for a non-fixed struct
//! whose members are all empty (the empty dirtree is the single byte `00`).
//! The decoder is strict about bounds but otherwise follows GLib's framing
//! rules; [`is_normal_form`] re-encodes and compares, which is the check ostree
//! applies to every metadata object it reads.
//!
//! Integers are encoded little-endian (the host order of every real producer);
//! the ostree-defined big-endian fields are converted by the typed layer in
//! [`crate::object`].

use std::fmt;

/// Decoding failure: what was expected and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GVariant of type '{ty}': {msg}")]
pub struct DecodeError {
    /// Type string of the value being decoded when the error occurred.
    pub ty: String,
    /// Human-readable reason.
    pub msg: String,
}

fn err(ty: &Type, msg: impl Into<String>) -> DecodeError {
    DecodeError {
        ty: ty.to_string(),
        msg: msg.into(),
    }
}

/// A GVariant type (the subset of the type grammar that ostree uses, plus the
/// remaining basic types so arbitrary commit metadata can be carried).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    /// `b`
    Bool,
    /// `y`
    Byte,
    /// `n`
    I16,
    /// `q`
    U16,
    /// `i`
    I32,
    /// `u`
    U32,
    /// `h`
    Handle,
    /// `x`
    I64,
    /// `t`
    U64,
    /// `d`
    Double,
    /// `s`
    Str,
    /// `o`
    ObjectPath,
    /// `g`
    Signature,
    /// `v`
    Variant,
    /// `m<T>`
    Maybe(Box<Type>),
    /// `a<T>`
    Array(Box<Type>),
    /// `(...)`
    Struct(Vec<Type>),
    /// `{KV}`
    DictEntry(Box<Type>, Box<Type>),
}

impl Type {
    /// Parses a complete type string such as `(a{sv}aya(say)sstayay)`.
    pub fn parse(s: &str) -> Result<Type, DecodeError> {
        let bytes = s.as_bytes();
        let (t, used) = Self::parse_one(bytes, 0).ok_or_else(|| DecodeError {
            ty: s.to_string(),
            msg: "malformed type string".into(),
        })?;
        if used != bytes.len() {
            return Err(DecodeError {
                ty: s.to_string(),
                msg: "trailing characters in type string".into(),
            });
        }
        Ok(t)
    }

    fn parse_one(b: &[u8], i: usize) -> Option<(Type, usize)> {
        let c = *b.get(i)?;
        let basic = match c {
            b'b' => Some(Type::Bool),
            b'y' => Some(Type::Byte),
            b'n' => Some(Type::I16),
            b'q' => Some(Type::U16),
            b'i' => Some(Type::I32),
            b'u' => Some(Type::U32),
            b'h' => Some(Type::Handle),
            b'x' => Some(Type::I64),
            b't' => Some(Type::U64),
            b'd' => Some(Type::Double),
            b's' => Some(Type::Str),
            b'o' => Some(Type::ObjectPath),
            b'g' => Some(Type::Signature),
            b'v' => Some(Type::Variant),
            _ => None,
        };
        if let Some(t) = basic {
            return Some((t, i + 1));
        }
        match c {
            b'm' => {
                let (t, n) = Self::parse_one(b, i + 1)?;
                Some((Type::Maybe(Box::new(t)), n))
            }
            b'a' => {
                let (t, n) = Self::parse_one(b, i + 1)?;
                Some((Type::Array(Box::new(t)), n))
            }
            b'(' => {
                let mut members = Vec::new();
                let mut j = i + 1;
                while *b.get(j)? != b')' {
                    let (t, n) = Self::parse_one(b, j)?;
                    members.push(t);
                    j = n;
                }
                Some((Type::Struct(members), j + 1))
            }
            b'{' => {
                let (k, n) = Self::parse_one(b, i + 1)?;
                if !k.is_basic() {
                    return None;
                }
                let (v, n) = Self::parse_one(b, n)?;
                if *b.get(n)? != b'}' {
                    return None;
                }
                Some((Type::DictEntry(Box::new(k), Box::new(v)), n + 1))
            }
            _ => None,
        }
    }

    fn is_basic(&self) -> bool {
        !matches!(
            self,
            Type::Variant | Type::Maybe(_) | Type::Array(_) | Type::Struct(_) | Type::DictEntry(..)
        )
    }

    /// Alignment in bytes (1, 2, 4 or 8).
    pub fn alignment(&self) -> usize {
        match self {
            Type::Bool | Type::Byte | Type::Str | Type::ObjectPath | Type::Signature => 1,
            Type::I16 | Type::U16 => 2,
            Type::I32 | Type::U32 | Type::Handle => 4,
            Type::I64 | Type::U64 | Type::Double | Type::Variant => 8,
            Type::Maybe(t) | Type::Array(t) => t.alignment(),
            Type::Struct(m) => m.iter().map(Type::alignment).max().unwrap_or(1),
            Type::DictEntry(k, v) => k.alignment().max(v.alignment()),
        }
    }

    /// Size in bytes if every value of this type has the same size.
    pub fn fixed_size(&self) -> Option<usize> {
        match self {
            Type::Bool | Type::Byte => Some(1),
            Type::I16 | Type::U16 => Some(2),
            Type::I32 | Type::U32 | Type::Handle => Some(4),
            Type::I64 | Type::U64 | Type::Double => Some(8),
            Type::Str | Type::ObjectPath | Type::Signature | Type::Variant => None,
            Type::Maybe(_) | Type::Array(_) => None,
            Type::Struct(m) => struct_fixed_size(m.iter(), self.alignment()),
            Type::DictEntry(k, v) => {
                struct_fixed_size([k.as_ref(), v.as_ref()].into_iter(), self.alignment())
            }
        }
    }
}

fn struct_fixed_size<'a>(members: impl Iterator<Item = &'a Type>, align: usize) -> Option<usize> {
    let mut size = 0usize;
    let mut any = false;
    for m in members {
        any = true;
        size = align_up(size, m.alignment()) + m.fixed_size()?;
    }
    if !any {
        // The unit type `()` is one zero byte.
        return Some(1);
    }
    Some(align_up(size, align))
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bool => f.write_str("b"),
            Type::Byte => f.write_str("y"),
            Type::I16 => f.write_str("n"),
            Type::U16 => f.write_str("q"),
            Type::I32 => f.write_str("i"),
            Type::U32 => f.write_str("u"),
            Type::Handle => f.write_str("h"),
            Type::I64 => f.write_str("x"),
            Type::U64 => f.write_str("t"),
            Type::Double => f.write_str("d"),
            Type::Str => f.write_str("s"),
            Type::ObjectPath => f.write_str("o"),
            Type::Signature => f.write_str("g"),
            Type::Variant => f.write_str("v"),
            Type::Maybe(t) => write!(f, "m{t}"),
            Type::Array(t) => write!(f, "a{t}"),
            Type::Struct(m) => {
                f.write_str("(")?;
                for t in m {
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
            Type::DictEntry(k, v) => write!(f, "{{{k}{v}}}"),
        }
    }
}

/// A GVariant value. `ay` is always represented as [`Value::Bytes`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `b`
    Bool(bool),
    /// `y`
    Byte(u8),
    /// `n`
    I16(i16),
    /// `q`
    U16(u16),
    /// `i`
    I32(i32),
    /// `u` (as stored, little-endian decoded)
    U32(u32),
    /// `h`
    Handle(i32),
    /// `x`
    I64(i64),
    /// `t` (as stored, little-endian decoded)
    U64(u64),
    /// `d`
    Double(f64),
    /// `s`
    Str(String),
    /// `o`
    ObjectPath(String),
    /// `g`
    Signature(String),
    /// `v`
    Variant(Box<Value>),
    /// `m<T>`: element type and optional content.
    Maybe(Type, Option<Box<Value>>),
    /// `ay`
    Bytes(Vec<u8>),
    /// `a<T>` for any element type other than `y`.
    Array(Type, Vec<Value>),
    /// `(...)`
    Struct(Vec<Value>),
    /// `{KV}`
    DictEntry(Box<Value>, Box<Value>),
}

impl Value {
    /// The GVariant type of this value.
    pub fn type_of(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Byte(_) => Type::Byte,
            Value::I16(_) => Type::I16,
            Value::U16(_) => Type::U16,
            Value::I32(_) => Type::I32,
            Value::U32(_) => Type::U32,
            Value::Handle(_) => Type::Handle,
            Value::I64(_) => Type::I64,
            Value::U64(_) => Type::U64,
            Value::Double(_) => Type::Double,
            Value::Str(_) => Type::Str,
            Value::ObjectPath(_) => Type::ObjectPath,
            Value::Signature(_) => Type::Signature,
            Value::Variant(_) => Type::Variant,
            Value::Maybe(t, _) => Type::Maybe(Box::new(t.clone())),
            Value::Bytes(_) => Type::Array(Box::new(Type::Byte)),
            Value::Array(t, _) => Type::Array(Box::new(t.clone())),
            Value::Struct(m) => Type::Struct(m.iter().map(Value::type_of).collect()),
            Value::DictEntry(k, v) => Type::DictEntry(Box::new(k.type_of()), Box::new(v.type_of())),
        }
    }

    /// Serializes this value in GVariant normal form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the serialization of `self` to `out`. `out` must begin at an
    /// offset aligned to this value's alignment (padding is relative to it).
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bool(b) => out.push(*b as u8),
            Value::Byte(b) => out.push(*b),
            Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I32(v) | Value::Handle(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Variant(v) => {
                v.encode_into(out);
                out.push(0);
                out.extend_from_slice(v.type_of().to_string().as_bytes());
            }
            Value::Maybe(t, v) => {
                if let Some(v) = v {
                    v.encode_into(out);
                    if t.fixed_size().is_none() {
                        out.push(0);
                    }
                }
            }
            Value::Bytes(b) => out.extend_from_slice(b),
            Value::Array(t, items) => {
                let fixed = t.fixed_size().is_some();
                let align = t.alignment();
                let mut ends = Vec::new();
                let mut body = Vec::new();
                for item in items {
                    pad_to(&mut body, align);
                    item.encode_into(&mut body);
                    if !fixed {
                        ends.push(body.len());
                    }
                }
                write_framed(out, body, &ends, false);
            }
            Value::Struct(members) => {
                let refs: Vec<&Value> = members.iter().collect();
                encode_struct(&refs, out);
            }
            Value::DictEntry(k, v) => encode_struct(&[k, v], out),
        }
    }
}

fn encode_struct(members: &[&Value], out: &mut Vec<u8>) {
    if members.is_empty() {
        out.push(0);
        return;
    }
    let types: Vec<Type> = members.iter().map(|m| m.type_of()).collect();
    let mut body = Vec::new();
    let mut ends = Vec::new();
    for (i, (m, t)) in members.iter().zip(&types).enumerate() {
        pad_to(&mut body, t.alignment());
        m.encode_into(&mut body);
        if t.fixed_size().is_none() && i + 1 < members.len() {
            ends.push(body.len());
        }
    }
    let st = Type::Struct(types);
    if st.fixed_size().is_some() {
        pad_to(&mut body, st.alignment());
        out.extend_from_slice(&body);
        return;
    }
    write_framed(out, body, &ends, true);
}

/// Appends `body` plus framing offsets of the smallest width that fits the
/// whole container (GLib's `g_variant_serialiser_determine_size` rule).
fn write_framed(out: &mut Vec<u8>, body: Vec<u8>, ends: &[usize], reverse: bool) {
    let w = offset_width(body.len(), ends.len());
    out.extend_from_slice(&body);
    let mut write = |e: usize| out.extend_from_slice(&e.to_le_bytes()[..w]);
    if reverse {
        ends.iter().rev().for_each(|&e| write(e));
    } else {
        ends.iter().for_each(|&e| write(e));
    }
}

fn offset_width(body: usize, n: usize) -> usize {
    if n == 0 {
        return 1;
    }
    if body + n <= 0xff {
        1
    } else if body + 2 * n <= 0xffff {
        2
    } else if body + 4 * n <= 0xffff_ffff {
        4
    } else {
        8
    }
}

/// Width of framing offsets for a container of `size` serialized bytes.
fn width_for_size(size: usize) -> usize {
    if size <= 0xff {
        1
    } else if size <= 0xffff {
        2
    } else if size <= 0xffff_ffff {
        4
    } else {
        8
    }
}

fn pad_to(buf: &mut Vec<u8>, align: usize) {
    let n = align_up(buf.len(), align);
    buf.resize(n, 0);
}

fn align_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

fn read_offset(data: &[u8], at: usize, w: usize) -> usize {
    let mut b = [0u8; 8];
    b[..w].copy_from_slice(&data[at..at + w]);
    u64::from_le_bytes(b) as usize
}

/// Decodes `data` as a value of type `ty`.
pub fn decode(ty: &Type, data: &[u8]) -> Result<Value, DecodeError> {
    if let Some(size) = ty.fixed_size() {
        if data.len() != size {
            return Err(err(
                ty,
                format!("expected {size} bytes, found {}", data.len()),
            ));
        }
    }
    let fixed4 = |d: &[u8]| -> [u8; 4] { d.try_into().expect("size checked") };
    let fixed8 = |d: &[u8]| -> [u8; 8] { d.try_into().expect("size checked") };
    Ok(match ty {
        Type::Bool => match data[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(err(ty, format!("boolean byte {b}"))),
        },
        Type::Byte => Value::Byte(data[0]),
        Type::I16 => Value::I16(i16::from_le_bytes([data[0], data[1]])),
        Type::U16 => Value::U16(u16::from_le_bytes([data[0], data[1]])),
        Type::I32 => Value::I32(i32::from_le_bytes(fixed4(data))),
        Type::Handle => Value::Handle(i32::from_le_bytes(fixed4(data))),
        Type::U32 => Value::U32(u32::from_le_bytes(fixed4(data))),
        Type::I64 => Value::I64(i64::from_le_bytes(fixed8(data))),
        Type::U64 => Value::U64(u64::from_le_bytes(fixed8(data))),
        Type::Double => Value::Double(f64::from_le_bytes(fixed8(data))),
        Type::Str | Type::ObjectPath | Type::Signature => {
            let s = decode_str(ty, data)?;
            match ty {
                Type::Str => Value::Str(s),
                Type::ObjectPath => Value::ObjectPath(s),
                _ => Value::Signature(s),
            }
        }
        Type::Variant => {
            let sep = data
                .iter()
                .rposition(|&b| b == 0)
                .ok_or_else(|| err(ty, "missing type separator"))?;
            let ts = std::str::from_utf8(&data[sep + 1..])
                .map_err(|_| err(ty, "type string is not UTF-8"))?;
            let child_ty = Type::parse(ts)?;
            Value::Variant(Box::new(decode(&child_ty, &data[..sep])?))
        }
        Type::Maybe(t) => {
            if data.is_empty() {
                Value::Maybe((**t).clone(), None)
            } else if t.fixed_size().is_some() {
                Value::Maybe((**t).clone(), Some(Box::new(decode(t, data)?)))
            } else {
                let (last, body) = data.split_last().expect("non-empty");
                if *last != 0 {
                    return Err(err(ty, "maybe without trailing zero byte"));
                }
                Value::Maybe((**t).clone(), Some(Box::new(decode(t, body)?)))
            }
        }
        Type::Array(t) if **t == Type::Byte => Value::Bytes(data.to_vec()),
        Type::Array(t) => Value::Array((**t).clone(), decode_array(ty, t, data)?),
        Type::Struct(members) => Value::Struct(decode_struct(ty, members, data)?),
        Type::DictEntry(k, v) => {
            let members = [(**k).clone(), (**v).clone()];
            let mut m = decode_struct(ty, &members, data)?;
            let v = m.pop().expect("two members");
            let k = m.pop().expect("two members");
            Value::DictEntry(Box::new(k), Box::new(v))
        }
    })
}

fn decode_str(ty: &Type, data: &[u8]) -> Result<String, DecodeError> {
    match data.split_last() {
        Some((0, s)) if !s.contains(&0) => std::str::from_utf8(s)
            .map(str::to_string)
            .map_err(|_| err(ty, "string is not UTF-8")),
        _ => Err(err(ty, "string not NUL-terminated")),
    }
}

fn decode_array(ty: &Type, elem: &Type, data: &[u8]) -> Result<Vec<Value>, DecodeError> {
    let mut items = Vec::new();
    if data.is_empty() {
        return Ok(items);
    }
    if let Some(size) = elem.fixed_size() {
        if !data.len().is_multiple_of(size) {
            return Err(err(ty, "length is not a multiple of the element size"));
        }
        for chunk in data.chunks(size) {
            items.push(decode(elem, chunk)?);
        }
        return Ok(items);
    }
    let w = width_for_size(data.len());
    if data.len() < w {
        return Err(err(ty, "truncated framing offset"));
    }
    let offsets_start = read_offset(data, data.len() - w, w);
    if offsets_start > data.len() || !(data.len() - offsets_start).is_multiple_of(w) {
        return Err(err(ty, "invalid framing offsets"));
    }
    let n = (data.len() - offsets_start) / w;
    let mut pos = 0;
    for i in 0..n {
        let start = align_up(pos, elem.alignment());
        let end = read_offset(data, offsets_start + i * w, w);
        if start > end || end > offsets_start {
            return Err(err(ty, format!("element {i} out of bounds")));
        }
        items.push(decode(elem, &data[start..end])?);
        pos = end;
    }
    Ok(items)
}

fn decode_struct(ty: &Type, members: &[Type], data: &[u8]) -> Result<Vec<Value>, DecodeError> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let w = width_for_size(data.len());
    let mut frames_used = 0usize;
    let n_frames = members
        .iter()
        .take(members.len() - 1)
        .filter(|m| m.fixed_size().is_none())
        .count();
    let frames_start = data
        .len()
        .checked_sub(n_frames * w)
        .ok_or_else(|| err(ty, "truncated framing offsets"))?;
    let mut pos = 0usize;
    let mut out = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let start = align_up(pos, m.alignment());
        let end = if let Some(size) = m.fixed_size() {
            start + size
        } else if i + 1 == members.len() {
            frames_start
        } else {
            frames_used += 1;
            read_offset(data, data.len() - frames_used * w, w)
        };
        if start > end || end > frames_start {
            return Err(err(ty, format!("member {i} out of bounds")));
        }
        out.push(decode(m, &data[start..end])?);
        pos = end;
    }
    Ok(out)
}

/// True if `data` is the normal-form serialization of a value of type `ty`
/// (decodes and re-encodes to the same bytes).
pub fn is_normal_form(ty: &Type, data: &[u8]) -> bool {
    match decode(ty, data) {
        Ok(v) => v.to_bytes() == data,
        Err(_) => false,
    }
}

/// Builds an `a{sv}` dictionary value from key/value pairs, keeping order.
pub fn vardict(entries: &[(String, Value)]) -> Value {
    Value::Array(
        Type::DictEntry(Box::new(Type::Str), Box::new(Type::Variant)),
        entries
            .iter()
            .map(|(k, v)| {
                Value::DictEntry(
                    Box::new(Value::Str(k.clone())),
                    Box::new(Value::Variant(Box::new(v.clone()))),
                )
            })
            .collect(),
    )
}

/// Splits an `a{sv}` value into key/value pairs (in stored order).
pub fn vardict_entries(v: &Value) -> Option<Vec<(String, Value)>> {
    let Value::Array(_, items) = v else {
        return None;
    };
    items
        .iter()
        .map(|e| match e {
            Value::DictEntry(k, v) => match (&**k, &**v) {
                (Value::Str(k), Value::Variant(v)) => Some((k.clone(), (**v).clone())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Formats a value the way `g_variant_print (v, TRUE)` does for the common
/// cases ostree prints (`show`, `cat`-like output).
pub fn print(v: &Value, type_annotate: bool) -> String {
    let mut s = String::new();
    print_into(v, type_annotate, &mut s);
    s
}

fn print_into(v: &Value, ann: bool, s: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Byte(b) => {
            let _ = write!(s, "{}0x{b:02x}", if ann { "byte " } else { "" });
        }
        Value::I16(x) => {
            let _ = write!(s, "{}{x}", if ann { "int16 " } else { "" });
        }
        Value::U16(x) => {
            let _ = write!(s, "{}{x}", if ann { "uint16 " } else { "" });
        }
        Value::I32(x) => {
            let _ = write!(s, "{x}");
        }
        Value::Handle(x) => {
            let _ = write!(s, "{}{x}", if ann { "handle " } else { "" });
        }
        Value::U32(x) => {
            let _ = write!(s, "{}{x}", if ann { "uint32 " } else { "" });
        }
        Value::I64(x) => {
            let _ = write!(s, "{}{x}", if ann { "int64 " } else { "" });
        }
        Value::U64(x) => {
            let _ = write!(s, "{}{x}", if ann { "uint64 " } else { "" });
        }
        Value::Double(x) => {
            let _ = write!(s, "{x:?}");
        }
        Value::Str(x) => quote_str(x, s),
        Value::ObjectPath(x) => {
            let _ = write!(s, "{}", if ann { "objectpath " } else { "" });
            quote_str(x, s);
        }
        Value::Signature(x) => {
            let _ = write!(s, "{}", if ann { "signature " } else { "" });
            quote_str(x, s);
        }
        Value::Variant(x) => {
            // GLib always annotates variant contents.
            s.push('<');
            print_into(x, true, s);
            s.push('>');
        }
        Value::Maybe(_, None) => s.push_str("nothing"),
        Value::Maybe(_, Some(x)) => {
            s.push_str("just ");
            print_into(x, ann, s);
        }
        Value::Bytes(b) => {
            // GLib prints NUL-terminated printable byte arrays as b'...'.
            if let Some((0, body)) = b.split_last() {
                if body.iter().all(|&c| (0x20..0x7f).contains(&c)) {
                    s.push_str("b'");
                    for &c in body {
                        if c == b'\'' || c == b'\\' {
                            s.push('\\');
                        }
                        s.push(c as char);
                    }
                    s.push('\'');
                    return;
                }
            }
            if b.is_empty() && ann {
                s.push_str("@ay ");
            }
            s.push('[');
            // Like GLib, only the first element carries the type annotation.
            for (i, c) in b.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                if i == 0 && ann {
                    s.push_str("byte ");
                }
                let _ = write!(s, "0x{c:02x}");
            }
            s.push(']');
        }
        Value::Array(t, items) => {
            if items.is_empty() && ann {
                let _ = write!(s, "@a{t} ");
            }
            let dict = matches!(t, Type::DictEntry(..));
            s.push(if dict { '{' } else { '[' });
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                // Only the first element is annotated (GLib behaviour).
                let a = ann && i == 0;
                match (dict, it) {
                    (true, Value::DictEntry(k, v)) => {
                        print_into(k, a, s);
                        s.push_str(": ");
                        print_into(v, a, s);
                    }
                    _ => print_into(it, a, s),
                }
            }
            s.push(if dict { '}' } else { ']' });
        }
        Value::Struct(m) => {
            s.push('(');
            for (i, it) in m.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                print_into(it, ann, s);
            }
            if m.len() == 1 {
                s.push(',');
            }
            s.push(')');
        }
        Value::DictEntry(k, v) => {
            s.push('{');
            print_into(k, ann, s);
            s.push_str(", ");
            print_into(v, ann, s);
            s.push('}');
        }
    }
}

fn quote_str(x: &str, s: &mut String) {
    let q = if x.contains('\'') && !x.contains('"') {
        '"'
    } else {
        '\''
    };
    s.push(q);
    for c in x.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if c == q => {
                s.push('\\');
                s.push(c);
            }
            c => s.push(c),
        }
    }
    s.push(q);
}

/// Parses GVariant text format (as accepted by `g_variant_parse`) for the
/// forms used on ostree command lines: `@TYPE` annotations, type keywords
/// (`uint64 7`), numbers, booleans, strings, arrays, dicts, tuples,
/// variants and maybes. `ty` gives the expected type when known.
pub fn parse_text(text: &str, ty: Option<&Type>) -> Result<Value, DecodeError> {
    let mut p = TextParser {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.value(ty)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

struct TextParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl TextParser<'_> {
    fn err(&self, msg: &str) -> DecodeError {
        DecodeError {
            ty: "text".into(),
            msg: format!(
                "{msg} at offset {} of '{}'",
                self.i,
                String::from_utf8_lossy(self.s)
            ),
        }
    }
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn word(&mut self) -> &str {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"_-+.".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or("")
    }

    fn value(&mut self, ty: Option<&Type>) -> Result<Value, DecodeError> {
        match self.peek() {
            Some(b'@') => {
                self.i += 1;
                let start = self.i;
                // A type string ends at the first whitespace.
                while self.i < self.s.len() && !self.s[self.i].is_ascii_whitespace() {
                    self.i += 1;
                }
                let ts = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                let t = Type::parse(ts)?;
                self.value(Some(&t))
            }
            Some(b'\'') | Some(b'"') => {
                let s = self.string()?;
                match ty {
                    None | Some(Type::Str) => Ok(Value::Str(s)),
                    Some(Type::ObjectPath) => Ok(Value::ObjectPath(s)),
                    Some(Type::Signature) => Ok(Value::Signature(s)),
                    Some(_) => Err(self.err("string where another type was expected")),
                }
            }
            Some(b'b')
                if self
                    .s
                    .get(self.i + 1)
                    .is_some_and(|c| *c == b'\'' || *c == b'"') =>
            {
                self.i += 1;
                let mut b = self.string()?.into_bytes();
                b.push(0);
                Ok(Value::Bytes(b))
            }
            Some(b'[') => {
                self.i += 1;
                let elem = match ty {
                    Some(Type::Array(e)) => Some((**e).clone()),
                    None => None,
                    Some(_) => return Err(self.err("array where another type was expected")),
                };
                let mut items = Vec::new();
                while !self.eat(b']') {
                    if !items.is_empty() && !self.eat(b',') {
                        return Err(self.err("expected ','"));
                    }
                    let t = elem.clone().or_else(|| items.first().map(Value::type_of));
                    items.push(self.value(t.as_ref())?);
                }
                let elem = match elem.or_else(|| items.first().map(Value::type_of)) {
                    Some(e) => e,
                    None => return Err(self.err("cannot infer the type of an empty array")),
                };
                if elem == Type::Byte {
                    return Ok(Value::Bytes(
                        items
                            .into_iter()
                            .map(|v| if let Value::Byte(b) = v { b } else { 0 })
                            .collect(),
                    ));
                }
                Ok(Value::Array(elem, items))
            }
            Some(b'{') => {
                self.i += 1;
                let (kt, vt) = match ty {
                    Some(Type::Array(e)) => match &**e {
                        Type::DictEntry(k, v) => (Some((**k).clone()), Some((**v).clone())),
                        _ => return Err(self.err("dictionary where another type was expected")),
                    },
                    None => (None, None),
                    Some(_) => return Err(self.err("dictionary where another type was expected")),
                };
                let mut items: Vec<Value> = Vec::new();
                while !self.eat(b'}') {
                    if !items.is_empty() && !self.eat(b',') {
                        return Err(self.err("expected ','"));
                    }
                    let k = self.value(kt.as_ref())?;
                    if !self.eat(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    let v = self.value(vt.as_ref())?;
                    items.push(Value::DictEntry(Box::new(k), Box::new(v)));
                }
                let et = match (kt, vt, items.first()) {
                    (Some(k), Some(v), _) => Type::DictEntry(Box::new(k), Box::new(v)),
                    (_, _, Some(first)) => first.type_of(),
                    _ => return Err(self.err("cannot infer the type of an empty dictionary")),
                };
                Ok(Value::Array(et, items))
            }
            Some(b'(') => {
                self.i += 1;
                let members = match ty {
                    Some(Type::Struct(m)) => Some(m.clone()),
                    None => None,
                    Some(_) => return Err(self.err("tuple where another type was expected")),
                };
                let mut items = Vec::new();
                while !self.eat(b')') {
                    if !items.is_empty() && !self.eat(b',') {
                        return Err(self.err("expected ','"));
                    }
                    if self.peek() == Some(b')') {
                        continue;
                    }
                    let t = members.as_ref().and_then(|m| m.get(items.len()).cloned());
                    items.push(self.value(t.as_ref())?);
                }
                Ok(Value::Struct(items))
            }
            Some(b'<') => {
                self.i += 1;
                let v = self.value(None)?;
                if !self.eat(b'>') {
                    return Err(self.err("expected '>'"));
                }
                Ok(Value::Variant(Box::new(v)))
            }
            Some(_) => {
                let save = self.i;
                let w = self.word().to_string();
                let typed = |t: Type| Some(t);
                let kw = match w.as_str() {
                    "true" => return Ok(Value::Bool(true)),
                    "false" => return Ok(Value::Bool(false)),
                    "nothing" => {
                        return match ty {
                            Some(Type::Maybe(t)) => Ok(Value::Maybe((**t).clone(), None)),
                            _ => Err(self.err("cannot infer the type of 'nothing'")),
                        }
                    }
                    "just" => {
                        let inner = match ty {
                            Some(Type::Maybe(t)) => Some((**t).clone()),
                            _ => None,
                        };
                        let v = self.value(inner.as_ref())?;
                        return Ok(Value::Maybe(v.type_of(), Some(Box::new(v))));
                    }
                    "byte" => typed(Type::Byte),
                    "int16" => typed(Type::I16),
                    "uint16" => typed(Type::U16),
                    "int32" => typed(Type::I32),
                    "uint32" => typed(Type::U32),
                    "handle" => typed(Type::Handle),
                    "int64" => typed(Type::I64),
                    "uint64" => typed(Type::U64),
                    "double" => typed(Type::Double),
                    "objectpath" => typed(Type::ObjectPath),
                    "signature" => typed(Type::Signature),
                    _ => None,
                };
                if let Some(t) = kw {
                    return self.value(Some(&t));
                }
                self.i = save;
                let w = self.word().to_string();
                self.number(&w, ty)
            }
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn number(&self, w: &str, ty: Option<&Type>) -> Result<Value, DecodeError> {
        let bad = || self.err(&format!("invalid number '{w}'"));
        let int = |w: &str| -> Option<i128> {
            if let Some(h) = w.strip_prefix("0x") {
                i128::from_str_radix(h, 16).ok()
            } else {
                w.parse().ok()
            }
        };
        let t = ty.cloned().unwrap_or(
            if w.contains('.') || w.contains('e') && !w.starts_with("0x") {
                Type::Double
            } else {
                Type::I32
            },
        );
        Ok(match t {
            Type::Double => Value::Double(w.parse().map_err(|_| bad())?),
            Type::Byte => Value::Byte(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::I16 => Value::I16(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::U16 => Value::U16(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::I32 => Value::I32(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::Handle => Value::Handle(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::U32 => Value::U32(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::I64 => Value::I64(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            Type::U64 => Value::U64(int(w).and_then(|n| n.try_into().ok()).ok_or_else(bad)?),
            _ => return Err(bad()),
        })
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&c) = self.s.get(self.i) {
            self.i += 1;
            if c == q {
                return String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"));
            }
            if c == b'\\' {
                let Some(&e) = self.s.get(self.i) else { break };
                self.i += 1;
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'0' => 0,
                    other => other,
                });
            } else {
                out.push(c);
            }
        }
        Err(self.err("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: Value) -> String {
        hex::encode(v.to_bytes())
    }

    #[test]
    fn reference_encodings() {
        // Examples from GLib's documentation and the ostree format notes.
        assert_eq!(
            enc(Value::Struct(vec![Value::U32(1), Value::Byte(2)])),
            "0100000002000000"
        );
        assert_eq!(
            enc(Value::Struct(vec![
                Value::Str("a".into()),
                Value::Str("bc".into())
            ])),
            "610062630002"
        );
        assert_eq!(
            enc(Value::Array(
                Type::Str,
                vec![Value::Str("a".into()), Value::Str("bc".into())]
            )),
            "6100626300".to_string() + "0205"
        );
        assert_eq!(enc(Value::Variant(Box::new(Value::U32(7)))), "070000000075");
        assert_eq!(enc(Value::Struct(vec![])), "00");
        let t = Type::parse("(a(say)a(sayay))").unwrap();
        let empty = decode(&t, &[0]).unwrap();
        assert_eq!(empty.to_bytes(), vec![0]);
    }

    #[test]
    fn type_roundtrip() {
        for s in [
            "(a{sv}aya(say)sstayay)",
            "(a(say)a(sayay))",
            "(uuua(ayay))",
            "(tuuuusa(ayay))",
            "(a(s(taya{sv}))a{sv})",
            "mv",
            "a{sa(s(taya{sv}))}",
        ] {
            assert_eq!(Type::parse(s).unwrap().to_string(), s);
        }
        assert!(Type::parse("(a").is_err());
        assert!(Type::parse("{vs}").is_err());
        assert!(Type::parse("uu").is_err());
    }

    #[test]
    fn wide_offsets() {
        let items: Vec<Value> = (0..200).map(|i| Value::Str(format!("item{i}"))).collect();
        let v = Value::Array(Type::Str, items);
        let b = v.to_bytes();
        assert_eq!(decode(&Type::parse("as").unwrap(), &b).unwrap(), v);
        assert!(is_normal_form(&Type::parse("as").unwrap(), &b));
    }

    #[test]
    fn rejects_garbage() {
        let t = Type::parse("(a{sv}aya(say)sstayay)").unwrap();
        assert!(decode(&t, &[0xff, 0xff, 0xff]).is_err());
        assert!(!is_normal_form(&Type::parse("s").unwrap(), b"ab"));
    }

    #[test]
    fn text_format() {
        let p = |s: &str| parse_text(s, None).unwrap();
        assert_eq!(p("'value'"), Value::Str("value".into()));
        assert_eq!(p("true"), Value::Bool(true));
        assert_eq!(p("@t 123"), Value::U64(123));
        assert_eq!(p("uint64 7"), Value::U64(7));
        assert_eq!(p("42"), Value::I32(42));
        assert_eq!(p("@a{sv} {}").type_of().to_string(), "a{sv}");
        assert_eq!(p("@a{sv} {}").to_bytes(), Vec::<u8>::new());
        assert_eq!(p("['a', 'b']").type_of().to_string(), "as");
        assert_eq!(p("{'k': <1>}").type_of().to_string(), "a{sv}");
        assert_eq!(p("(1, 'x')").type_of().to_string(), "(is)");
        assert_eq!(p("b'ab'"), Value::Bytes(b"ab\0".to_vec()));
        assert!(parse_text("[", None).is_err());
        assert!(parse_text("[]", None).is_err());
        assert!(parse_text("@u 'x'", None).is_err());
    }

    proptest::proptest! {
        #[test]
        fn roundtrip_dirtree(names in proptest::collection::vec("[a-z]{0,300}", 0..40)) {
            let ty = Type::parse("(a(say)a(sayay))").unwrap();
            let files = names.iter().map(|n| Value::Struct(vec![
                Value::Str(n.clone()), Value::Bytes(vec![7; 32])])).collect();
            let v = Value::Struct(vec![
                Value::Array(Type::parse("(say)").unwrap(), files),
                Value::Array(Type::parse("(sayay)").unwrap(), vec![]),
            ]);
            let b = v.to_bytes();
            proptest::prop_assert_eq!(decode(&ty, &b).unwrap(), v);
        }
    }
}
