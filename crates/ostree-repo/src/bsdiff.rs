//! Binary diffs for the `bspatch` opcode of static deltas.
//!
//! The patch format is the one upstream's bundled bsdiff (Matthew Endsley's
//! library, used without its `ENDSLEY/BSDIFF43` file header and without
//! compression, since the whole delta part is xz-compressed afterwards)
//! writes and `ostree-repo-static-delta-processing.c` reads: repeated control
//! triples of 8-byte sign-magnitude little-endian integers — diff length,
//! extra length, old-position seek — each followed by that many diff bytes
//! (added to the old data) and extra bytes (copied).
//!
//! [`diff`] is Colin Percival's algorithm: a suffix array of the old data
//! finds, for each position of the new data, the longest match in the old;
//! stretches where the new data mostly agrees with the old at a constant
//! offset become "diff" runs (mostly zero bytes, which compress well) and
//! the rest "extra" bytes. The suffix array is built by SA-IS in linear time
//! with 32-bit entries, so memory stays near five bytes per old byte plus
//! both inputs (upstream's qsufsort needs sixteen). It lists the empty
//! suffix first, as qsufsort's does, so the binary search visits the same
//! entries and the patch comes out byte for byte as upstream's.

use crate::{Error, Result};

/// Largest old input [`diff`] accepts: suffix array entries are `u32` and
/// one value is reserved as the empty-slot marker.
pub const MAX_OLD_SIZE: u64 = u32::MAX as u64 - 1;

/// Computes a patch that turns `old` into `new` (see the module docs for the
/// format). Fails only when `old` is larger than [`MAX_OLD_SIZE`].
pub fn diff(old: &[u8], new: &[u8]) -> Result<Vec<u8>> {
    if old.len() as u64 > MAX_OLD_SIZE {
        return Err(Error::Invalid(format!(
            "bsdiff: old data of {} bytes exceeds the limit of {MAX_OLD_SIZE}",
            old.len()
        )));
    }
    let sa = suffix_array_with_empty(old);
    Ok(Differ { old, new, sa: &sa }.run())
}

/// Applies a patch made by [`diff`] or by upstream's bsdiff; `new_size` is
/// the size of the result (the patch stream does not record it).
pub fn patch(old: &[u8], patch: &[u8], new_size: u64) -> Result<Vec<u8>> {
    let corrupt = || Error::Corrupt("Corrupt bspatch data".into());
    let mut p = patch;
    let mut take = |n: usize| -> Result<&[u8]> {
        if p.len() < n {
            return Err(corrupt());
        }
        let (a, b) = p.split_at(n);
        p = b;
        Ok(a)
    };
    let new_size = usize::try_from(new_size).map_err(|_| corrupt())?;
    let mut new = Vec::with_capacity(new_size.min(1 << 26));
    let mut oldpos: i64 = 0;
    while new.len() < new_size {
        let ctrl = take(24)?;
        let (diff, extra, seek) = (
            read_offset(&ctrl[..8]),
            read_offset(&ctrl[8..16]),
            read_offset(&ctrl[16..]),
        );
        if diff < 0 || extra < 0 {
            return Err(corrupt());
        }
        let (diff, extra) = (diff as usize, extra as usize);
        if new.len() + diff > new_size {
            return Err(corrupt());
        }
        let d = take(diff)?;
        for (i, b) in d.iter().enumerate() {
            let op = oldpos.saturating_add(i as i64);
            let ob = if op >= 0 && (op as usize) < old.len() {
                old[op as usize]
            } else {
                0
            };
            new.push(b.wrapping_add(ob));
        }
        oldpos = oldpos.checked_add(diff as i64).ok_or_else(corrupt)?;
        if new.len() + extra > new_size {
            return Err(corrupt());
        }
        new.extend_from_slice(take(extra)?);
        oldpos = oldpos.checked_add(seek).ok_or_else(corrupt)?;
    }
    Ok(new)
}

/// bsdiff's integer encoding: magnitude in the low 63 bits, little-endian,
/// sign in the top bit of the last byte.
fn write_offset(out: &mut Vec<u8>, x: i64) {
    let mut b = x.unsigned_abs().to_le_bytes();
    if x < 0 {
        b[7] |= 0x80;
    }
    out.extend_from_slice(&b);
}

fn read_offset(b: &[u8]) -> i64 {
    let magnitude = i64::from_le_bytes(b.try_into().expect("8 bytes")) & i64::MAX;
    if b[7] & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

fn match_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

struct Differ<'a> {
    old: &'a [u8],
    new: &'a [u8],
    /// Suffix array of `old`, empty suffix first (`old.len() + 1` entries).
    sa: &'a [u32],
}

impl Differ<'_> {
    /// Where in `old` the longest prefix of `target` occurs, and its length.
    /// Binary search narrows to two neighbouring suffixes, exactly as bsdiff's
    /// `search` does (ties go to the upper one), which keeps patches identical.
    fn search(&self, target: &[u8]) -> (usize, usize) {
        let (mut lo, mut hi) = (0, self.sa.len() - 1);
        while hi - lo >= 2 {
            let mid = lo + (hi - lo) / 2;
            let suffix = &self.old[self.sa[mid] as usize..];
            let k = suffix.len().min(target.len());
            if suffix[..k] < target[..k] {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (a, b) = (self.sa[lo] as usize, self.sa[hi] as usize);
        let (la, lb) = (
            match_len(&self.old[a..], target),
            match_len(&self.old[b..], target),
        );
        if la > lb {
            (a, la)
        } else {
            (b, lb)
        }
    }

    /// `old[i]` when `i` is inside `old`.
    fn old_at(&self, i: i64) -> Option<u8> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.old.get(i).copied())
    }

    fn run(&self) -> Vec<u8> {
        let (old, new) = (self.old, self.new);
        let (old_len, new_len) = (old.len() as i64, new.len() as i64);
        let mut out = Vec::new();
        // Signed throughout: the seek field and the scoring below go negative.
        let (mut scan, mut len, mut pos) = (0i64, 0i64, 0i64);
        let (mut last_scan, mut last_pos, mut last_offset) = (0i64, 0i64, 0i64);
        while scan < new_len {
            // Find the next place where a fresh match beats continuing the
            // current alignment (`last_offset`) by more than 8 bytes, or
            // where the current alignment itself is the whole match.
            let mut old_score = 0i64;
            scan += len;
            let mut scsc = scan;
            while scan < new_len {
                let (p, l) = self.search(&new[scan as usize..]);
                (pos, len) = (p as i64, l as i64);
                while scsc < scan + len {
                    if self.old_at(scsc + last_offset) == Some(new[scsc as usize]) {
                        old_score += 1;
                    }
                    scsc += 1;
                }
                if (len == old_score && len != 0) || len > old_score + 8 {
                    break;
                }
                if self.old_at(scan + last_offset) == Some(new[scan as usize]) {
                    old_score -= 1;
                }
                scan += 1;
            }
            if len == old_score && scan != new_len {
                continue;
            }

            // Extend the previous match forwards and this one backwards as
            // long as more than half the bytes agree.
            let (mut s, mut best, mut len_f) = (0i64, 0i64, 0i64);
            let mut i = 0i64;
            while last_scan + i < scan && last_pos + i < old_len {
                if old[(last_pos + i) as usize] == new[(last_scan + i) as usize] {
                    s += 1;
                }
                i += 1;
                if s * 2 - i > best * 2 - len_f {
                    best = s;
                    len_f = i;
                }
            }
            let mut len_b = 0i64;
            if scan < new_len {
                let (mut s, mut best) = (0i64, 0i64);
                let mut i = 1i64;
                while scan >= last_scan + i && pos >= i {
                    if old[(pos - i) as usize] == new[(scan - i) as usize] {
                        s += 1;
                    }
                    if s * 2 - i > best * 2 - len_b {
                        best = s;
                        len_b = i;
                    }
                    i += 1;
                }
            }
            // Where the two extensions overlap, split at the best point.
            if last_scan + len_f > scan - len_b {
                let overlap = (last_scan + len_f) - (scan - len_b);
                let (mut s, mut best, mut len_s) = (0i64, 0i64, 0i64);
                for i in 0..overlap {
                    let f = last_scan + len_f - overlap + i;
                    if new[f as usize] == old[(last_pos + len_f - overlap + i) as usize] {
                        s += 1;
                    }
                    if new[(scan - len_b + i) as usize] == old[(pos - len_b + i) as usize] {
                        s -= 1;
                    }
                    if s > best {
                        best = s;
                        len_s = i + 1;
                    }
                }
                len_f += len_s - overlap;
                len_b -= len_s;
            }

            let extra = (scan - len_b) - (last_scan + len_f);
            write_offset(&mut out, len_f);
            write_offset(&mut out, extra);
            write_offset(&mut out, (pos - len_b) - (last_pos + len_f));
            let (ls, lp) = (last_scan as usize, last_pos as usize);
            out.extend(
                new[ls..ls + len_f as usize]
                    .iter()
                    .zip(&old[lp..lp + len_f as usize])
                    .map(|(n, o)| n.wrapping_sub(*o)),
            );
            let e = ls + len_f as usize;
            out.extend_from_slice(&new[e..e + extra as usize]);

            last_scan = scan - len_b;
            last_pos = pos - len_b;
            last_offset = pos - scan;
        }
        out
    }
}

// ----------------------------------------------------------- suffix array

/// Marks an empty slot while the suffix array is being induced.
const EMPTY: u32 = u32::MAX;

/// The suffix array of `s` with the empty suffix first: `s.len() + 1`
/// entries, as bsdiff's search expects.
fn suffix_array_with_empty(s: &[u8]) -> Vec<u32> {
    let mut sa = vec![0u32; s.len() + 1];
    sa[0] = s.len() as u32;
    sais(s, 256, &mut sa[1..]);
    sa
}

/// A symbol of the text being sorted: bytes at the top level, names of LMS
/// substrings in the recursion.
trait Symbol: Copy {
    fn index(self) -> usize;
}

impl Symbol for u8 {
    fn index(self) -> usize {
        self as usize
    }
}

impl Symbol for u32 {
    fn index(self) -> usize {
        self as usize
    }
}

/// S/L suffix types, one bit each (S: the suffix is smaller than the next
/// one). A virtual sentinel smaller than every symbol follows the text, so
/// the last suffix is L.
struct Types(Vec<u64>);

impl Types {
    fn new<T: Symbol>(s: &[T]) -> Types {
        let n = s.len();
        let mut bits = vec![0u64; n.div_ceil(64)];
        let mut next_is_s = false;
        for i in (0..n.saturating_sub(1)).rev() {
            let (a, b) = (s[i].index(), s[i + 1].index());
            let is_s = a < b || (a == b && next_is_s);
            if is_s {
                bits[i / 64] |= 1 << (i % 64);
            }
            next_is_s = is_s;
        }
        Types(bits)
    }

    fn is_s(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// Leftmost S: an S suffix right after an L suffix.
    fn is_lms(&self, i: usize) -> bool {
        i > 0 && self.is_s(i) && !self.is_s(i - 1)
    }
}

fn bucket_heads(counts: &[u32], out: &mut [u32]) {
    let mut sum = 0;
    for (c, o) in counts.iter().zip(out.iter_mut()) {
        *o = sum;
        sum += c;
    }
}

fn bucket_tails(counts: &[u32], out: &mut [u32]) {
    let mut sum = 0;
    for (c, o) in counts.iter().zip(out.iter_mut()) {
        sum += c;
        *o = sum;
    }
}

/// Induced sorting: from the LMS suffixes already in `sa` (at their bucket
/// tails), places every L suffix left to right, then every S suffix right
/// to left.
fn induce<T: Symbol>(s: &[T], sa: &mut [u32], t: &Types, counts: &[u32], bkt: &mut [u32]) {
    let n = s.len();
    bucket_heads(counts, bkt);
    // The sentinel is the smallest suffix; the one before it is L.
    let c = s[n - 1].index();
    sa[bkt[c] as usize] = (n - 1) as u32;
    bkt[c] += 1;
    for i in 0..n {
        let j = sa[i];
        if j != EMPTY && j > 0 && !t.is_s(j as usize - 1) {
            let c = s[j as usize - 1].index();
            sa[bkt[c] as usize] = j - 1;
            bkt[c] += 1;
        }
    }
    bucket_tails(counts, bkt);
    for i in (0..n).rev() {
        let j = sa[i];
        if j != EMPTY && j > 0 && t.is_s(j as usize - 1) {
            let c = s[j as usize - 1].index();
            bkt[c] -= 1;
            sa[bkt[c] as usize] = j - 1;
        }
    }
}

/// Whether the LMS substrings at `a` and `b` (up to and including the next
/// LMS position) are equal. One reaching the sentinel is unique.
fn lms_substrings_equal<T: Symbol>(s: &[T], t: &Types, a: usize, b: usize) -> bool {
    let n = s.len();
    for d in 0.. {
        let (x, y) = (a + d, b + d);
        if x >= n || y >= n {
            return false;
        }
        if s[x].index() != s[y].index() || t.is_s(x) != t.is_s(y) {
            return false;
        }
        if d > 0 && (t.is_lms(x) || t.is_lms(y)) {
            return t.is_lms(x) && t.is_lms(y);
        }
    }
    unreachable!("the loop returns at the end of the text")
}

/// SA-IS (Nong, Zhang and Chan): sorts the suffixes of `s`, whose symbols
/// are below `k`, into `sa` (`s.len()` entries). The reduced problem is
/// solved inside `sa` itself — its text in the upper part, its suffix array
/// in the lower — so no level allocates more than its bit set and buckets.
fn sais<T: Symbol>(s: &[T], k: usize, sa: &mut [u32]) {
    let n = s.len();
    match n {
        0 => return,
        1 => {
            sa[0] = 0;
            return;
        }
        _ => {}
    }
    let t = Types::new(s);
    let mut counts = vec![0u32; k];
    for c in s {
        counts[c.index()] += 1;
    }
    let mut bkt = vec![0u32; k];

    // 1. Sort the LMS substrings: drop LMS positions at their bucket tails
    //    in any order and induce.
    sa.fill(EMPTY);
    bucket_tails(&counts, &mut bkt);
    for (i, c) in s.iter().enumerate().skip(1) {
        if t.is_lms(i) {
            let c = c.index();
            bkt[c] -= 1;
            sa[bkt[c] as usize] = i as u32;
        }
    }
    induce(s, sa, &t, &counts, &mut bkt);

    // 2. Gather the LMS positions, now in substring order, at the front.
    let mut m = 0;
    for i in 0..n {
        let p = sa[i];
        if p != EMPTY && t.is_lms(p as usize) {
            sa[m] = p;
            m += 1;
        }
    }

    // 3. Name each LMS substring by its rank among distinct ones. LMS
    //    positions are at least two apart and at most n/2 of them exist, so
    //    `m + p/2` gives each a distinct slot after the first m.
    sa[m..].fill(EMPTY);
    let mut name = 0u32;
    for i in 0..m {
        let p = sa[i] as usize;
        if i > 0 && !lms_substrings_equal(s, &t, sa[i - 1] as usize, p) {
            name += 1;
        }
        sa[m + p / 2] = name;
    }
    let names = if m == 0 { 0 } else { name as usize + 1 };
    // Pack the names, in text order, into the last m slots: the reduced text.
    let mut j = n;
    for i in (m..n).rev() {
        if sa[i] != EMPTY {
            j -= 1;
            sa[j] = sa[i];
        }
    }

    // 4. Sort the suffixes of the reduced text; with all names distinct the
    //    order is the names themselves.
    {
        let (lower, reduced) = sa.split_at_mut(n - m);
        let reduced_sa = &mut lower[..m];
        if names < m {
            sais(&*reduced, names, reduced_sa);
        } else {
            for (i, &c) in reduced.iter().enumerate() {
                reduced_sa[c as usize] = i as u32;
            }
        }
    }

    // 5. Map reduced suffixes back to LMS positions of the text.
    let mut j = n - m;
    for i in 1..n {
        if t.is_lms(i) {
            sa[j] = i as u32;
            j += 1;
        }
    }
    for i in 0..m {
        sa[i] = sa[n - m + sa[i] as usize];
    }

    // 6. Place the sorted LMS suffixes at their bucket tails, keeping their
    //    order (the target slot is never below the source, so going from
    //    the largest down overwrites nothing unread), and induce the rest.
    sa[m..].fill(EMPTY);
    bucket_tails(&counts, &mut bkt);
    for i in (0..m).rev() {
        let p = sa[i];
        sa[i] = EMPTY;
        let c = s[p as usize].index();
        bkt[c] -= 1;
        sa[bkt[c] as usize] = p;
    }
    induce(s, sa, &t, &counts, &mut bkt);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_suffix_array(s: &[u8]) -> Vec<u32> {
        let mut v: Vec<u32> = (0..=s.len() as u32).collect();
        v.sort_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
        v
    }

    fn roundtrip(old: &[u8], new: &[u8]) -> Vec<u8> {
        let p = diff(old, new).unwrap();
        assert_eq!(patch(old, &p, new.len() as u64).unwrap(), new);
        p
    }

    /// Bytes from a small alphabet make long repeats, which exercise the
    /// recursion of SA-IS and the extension logic of bsdiff.
    fn text(alphabet: u8, max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0..alphabet, 0..max)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn suffix_array_is_sorted(s in prop_oneof![text(2, 300), text(4, 300), any::<Vec<u8>>()]) {
            prop_assert_eq!(suffix_array_with_empty(&s), naive_suffix_array(&s));
        }

        #[test]
        fn patch_reproduces_new(old in prop_oneof![text(3, 2000), any::<Vec<u8>>()],
                                new in prop_oneof![text(3, 2000), any::<Vec<u8>>()]) {
            roundtrip(&old, &new);
        }

        #[test]
        fn patch_reproduces_an_edited_copy(old in any::<Vec<u8>>(),
                                           edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..20)) {
            let mut new = old.clone();
            for (at, byte, kind) in edits {
                if new.is_empty() {
                    new.push(byte);
                    continue;
                }
                let i = at.index(new.len());
                match kind {
                    0 => new[i] = byte,
                    1 => new.insert(i, byte),
                    _ => { new.remove(i); }
                }
            }
            roundtrip(&old, &new);
        }
    }

    #[test]
    fn suffix_array_of_runs_and_periods() {
        for s in [
            vec![],
            vec![7],
            vec![0; 1000],
            b"abababababababab".to_vec(),
            b"mississippi".to_vec(),
            (0..2000).map(|i| (i % 7) as u8).collect(),
            (0..2000u32).map(|i| (i * i % 251) as u8).collect(),
        ] {
            assert_eq!(suffix_array_with_empty(&s), naive_suffix_array(&s), "{s:?}");
        }
    }

    #[test]
    fn edge_inputs() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
        assert!(roundtrip(b"", b"").is_empty());
        roundtrip(b"", &data);
        roundtrip(&data, b"");
        // Identical data: one control (the seek after the last one is never
        // used), all-zero diff bytes, no extra.
        let p = roundtrip(&data, &data);
        assert_eq!(p.len(), 24 + data.len());
        assert_eq!(read_offset(&p[..8]), data.len() as i64);
        assert_eq!(read_offset(&p[8..16]), 0);
        assert!(p[24..].iter().all(|b| *b == 0));
        // Nothing in common: the new data travels as extra bytes.
        let other: Vec<u8> = data.iter().map(|b| b ^ 0x80).collect();
        let p = roundtrip(&data[..256], &other[..256]);
        assert!(p.len() >= 256);
    }

    #[test]
    fn small_edit_gives_small_patch() {
        let mut x = 0x1234_5678u32;
        let old: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut new = old.clone();
        new[1000] ^= 1;
        new.splice(100_000..100_000, *b"inserted");
        new.truncate(190_000);
        let p = roundtrip(&old, &new);
        // Diff bytes are mostly zero: what matters is how little survives
        // compression, but the non-zero bytes already show it.
        let nonzero = p.iter().filter(|b| **b != 0).count();
        assert!(nonzero < 200, "{nonzero} non-zero bytes");
    }

    #[test]
    fn offsets_are_sign_magnitude() {
        let mut b = Vec::new();
        write_offset(&mut b, -5);
        assert_eq!(b, [5, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(read_offset(&b), -5);
        b.clear();
        write_offset(&mut b, 0x0102);
        assert_eq!(b, [2, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn patch_rejects_truncated_or_oversized_data() {
        let old = b"hello world";
        // new = "hellO" (diff over old[0..5]) + "!!" (extra), then seek back
        // to 0 and diff 2 more bytes: "he".
        let mut p = Vec::new();
        write_offset(&mut p, 5);
        write_offset(&mut p, 2);
        write_offset(&mut p, -5);
        p.extend_from_slice(&[0, 0, 0, 0, b'O'.wrapping_sub(b'o')]);
        p.extend_from_slice(b"!!");
        write_offset(&mut p, 2);
        write_offset(&mut p, 0);
        write_offset(&mut p, 0);
        p.extend_from_slice(&[0, 0]);
        assert_eq!(patch(old, &p, 9).unwrap(), b"hellO!!he");
        assert!(patch(old, &p[..10], 9).is_err());
        assert!(patch(old, &p, 8).is_err());
        assert!(patch(old, &p, 10).is_err());
    }
}
