//! gzip exactly as Go's `compress/gzip` writes it at `BestCompression`.
//!
//! Butane picks between percent-encoding, base64 and gzip+base64 by length,
//! so the compressed size decides the output; other deflate implementations
//! (zlib, miniz) produce different sizes and sometimes a different choice.
//! This is a re-implementation of the algorithm of Go's classic
//! `compress/flate` compressor for levels 4–9 (hash chains over 4-byte hashes,
//! lazy matching, blocks of at most 16384 tokens, per block the smallest of
//! stored / fixed Huffman / dynamic Huffman with Go's length-limited code
//! construction) and of its framing (a final empty stored block on close).

const WINDOW_SIZE: usize = 1 << 15;
const WINDOW_MASK: usize = WINDOW_SIZE - 1;
const MIN_MATCH: usize = 4;
const MAX_MATCH: usize = 258;
const BASE_MATCH_LENGTH: usize = 3;
const BASE_MATCH_OFFSET: usize = 1;
const MAX_BLOCK_TOKENS: usize = 1 << 14;
const MAX_STORE_BLOCK: usize = 65535;
const HASH_BITS: u32 = 17;
const HASH_SIZE: usize = 1 << HASH_BITS;
const HASH_MASK: u32 = (1 << HASH_BITS) - 1;
const MAX_HASH_OFFSET: usize = 1 << 24;
const HASH_MUL: u32 = 0x1e35_a7bd;

// Level 9 parameters: good, lazy, nice, chain.
const GOOD: usize = 32;
const LAZY: usize = 258;
const NICE: usize = 258;
const CHAIN: usize = 4096;

const MAX_NUM_LIT: usize = 286;
const OFFSET_CODE_COUNT: usize = 30;
const END_BLOCK: u32 = 256;
const LENGTH_CODES_START: usize = 257;
const CODEGEN_CODE_COUNT: usize = 19;
const BAD_CODE: u8 = 255;

const LENGTH_EXTRA_BITS: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const LENGTH_BASE: [u32; 29] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128,
    160, 192, 224, 255,
];
const OFFSET_EXTRA_BITS: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
const OFFSET_BASE: [u32; 30] = [
    0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0006, 0x0008, 0x000c, 0x0010, 0x0018, 0x0020, 0x0030,
    0x0040, 0x0060, 0x0080, 0x00c0, 0x0100, 0x0180, 0x0200, 0x0300, 0x0400, 0x0600, 0x0800, 0x0c00,
    0x1000, 0x1800, 0x2000, 0x3000, 0x4000, 0x6000,
];
const CODEGEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// A literal byte (or the end-of-block marker) or a match.
#[derive(Clone, Copy)]
enum Token {
    Literal(u32),
    /// Length minus 3, offset minus 1.
    Match {
        xlen: u32,
        xoff: u32,
    },
}

/// The deflate length code (0-based, add 257) for `xlen` = length - 3.
fn length_code(xlen: u32) -> usize {
    LENGTH_BASE.iter().rposition(|&b| b <= xlen).unwrap_or(0)
}

/// The distance code for `xoff` = distance - 1.
fn offset_code(xoff: u32) -> usize {
    OFFSET_BASE.iter().rposition(|&b| b <= xoff).unwrap_or(0)
}

fn hash4(b: &[u8]) -> u32 {
    let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    v.wrapping_mul(HASH_MUL) >> (32 - HASH_BITS)
}

fn reverse_bits(code: u16, len: u8) -> u16 {
    (code << (16 - len as u32)).reverse_bits()
}

// ---------------------------------------------------------------------------
// Huffman code construction (Go's `huffmanEncoder.generate`).

#[derive(Clone)]
struct Huffman {
    code: Vec<u16>,
    len: Vec<u16>,
}

#[derive(Clone, Copy, Default)]
struct LitNode {
    literal: u16,
    freq: i32,
}

impl Huffman {
    fn new(size: usize) -> Huffman {
        Huffman {
            code: vec![0; size],
            len: vec![0; size],
        }
    }

    fn fixed_literal() -> Huffman {
        let mut h = Huffman::new(MAX_NUM_LIT);
        for ch in 0..MAX_NUM_LIT as u16 {
            let (bits, size) = match ch {
                0..=143 => (ch + 48, 8),
                144..=255 => (ch + 400 - 144, 9),
                256..=279 => (ch - 256, 7),
                _ => (ch + 192 - 280, 8),
            };
            h.code[ch as usize] = reverse_bits(bits, size);
            h.len[ch as usize] = size as u16;
        }
        h
    }

    fn fixed_offset() -> Huffman {
        let mut h = Huffman::new(OFFSET_CODE_COUNT);
        for i in 0..OFFSET_CODE_COUNT {
            h.code[i] = reverse_bits(i as u16, 5);
            h.len[i] = 5;
        }
        h
    }

    fn bit_length(&self, freq: &[i32]) -> usize {
        freq.iter()
            .zip(&self.len)
            .map(|(&f, &l)| f as usize * l as usize)
            .sum()
    }

    fn generate(&mut self, freq: &[i32], max_bits: i32) {
        let mut list: Vec<LitNode> = Vec::with_capacity(freq.len() + 1);
        for (i, &f) in freq.iter().enumerate() {
            if f != 0 {
                list.push(LitNode {
                    literal: i as u16,
                    freq: f,
                });
            } else {
                self.len[i] = 0;
            }
        }
        if list.len() <= 2 {
            for (i, node) in list.iter().enumerate() {
                self.code[node.literal as usize] = i as u16;
                self.len[node.literal as usize] = 1;
            }
            return;
        }
        // (freq, literal) is a total order, so any sort gives Go's result.
        list.sort_by_key(|n| (n.freq, n.literal));
        let counts = bit_counts(&list, max_bits);
        self.assign(&counts, &list);
    }

    fn assign(&mut self, bit_count: &[i32], list: &[LitNode]) {
        let mut code: u16 = 0;
        let mut rest = list.len();
        for (n, &bits) in bit_count.iter().enumerate() {
            code <<= 1;
            if n == 0 || bits == 0 {
                continue;
            }
            // The `bits` least frequent remaining literals get `n`-bit codes,
            // assigned in literal order.
            let mut chunk: Vec<LitNode> = list[rest - bits as usize..rest].to_vec();
            chunk.sort_by_key(|c| c.literal);
            for node in chunk {
                self.code[node.literal as usize] = reverse_bits(code, n as u8);
                self.len[node.literal as usize] = n as u16;
                code = code.wrapping_add(1);
            }
            rest -= bits as usize;
        }
    }
}

#[derive(Clone, Copy, Default)]
struct LevelInfo {
    level: i32,
    last_freq: i32,
    next_char_freq: i32,
    next_pair_freq: i32,
    needed: i32,
}

/// How many literals get each code length, limited to `max_bits`
/// (Go's `bitCounts`, a boundary package-merge over the sorted list).
fn bit_counts(sorted: &[LitNode], max_bits: i32) -> Vec<i32> {
    let n = sorted.len() as i32;
    let mut list = sorted.to_vec();
    list.push(LitNode {
        literal: u16::MAX,
        freq: i32::MAX,
    });
    let max_bits = max_bits.min(n - 1);
    let mut levels = [LevelInfo::default(); 16];
    let mut leaf_counts = [[0i32; 16]; 16];
    for level in 1..=max_bits {
        levels[level as usize] = LevelInfo {
            level,
            last_freq: list[1].freq,
            next_char_freq: list[2].freq,
            next_pair_freq: list[0].freq + list[1].freq,
            needed: 0,
        };
        leaf_counts[level as usize][level as usize] = 2;
        if level == 1 {
            levels[1].next_pair_freq = i32::MAX;
        }
    }
    levels[max_bits as usize].needed = 2 * n - 4;
    let mut level = max_bits as usize;
    loop {
        if levels[level].next_pair_freq == i32::MAX && levels[level].next_char_freq == i32::MAX {
            levels[level].needed = 0;
            levels[level + 1].next_pair_freq = i32::MAX;
            level += 1;
            continue;
        }
        let prev_freq = levels[level].last_freq;
        if levels[level].next_char_freq < levels[level].next_pair_freq {
            let next = leaf_counts[level][level] + 1;
            levels[level].last_freq = levels[level].next_char_freq;
            leaf_counts[level][level] = next;
            levels[level].next_char_freq = list[next as usize].freq;
        } else {
            levels[level].last_freq = levels[level].next_pair_freq;
            let (lower, upper) = leaf_counts.split_at_mut(level);
            upper[0][..level].copy_from_slice(&lower[level - 1][..level]);
            levels[level - 1].needed = 2;
        }
        levels[level].needed -= 1;
        if levels[level].needed == 0 {
            if levels[level].level == max_bits {
                break;
            }
            levels[level + 1].next_pair_freq = prev_freq + levels[level].last_freq;
            level += 1;
        } else {
            while levels[level - 1].needed > 0 {
                level -= 1;
            }
        }
    }
    let mut bit_count = vec![0i32; max_bits as usize + 1];
    let counts = &leaf_counts[max_bits as usize];
    // The deepest level holds the literals that need the fewest bits.
    for (bits, level) in (1..).zip((1..=max_bits as usize).rev()) {
        bit_count[bits] = counts[level] - counts[level - 1];
    }
    bit_count
}

// ---------------------------------------------------------------------------
// Bit output and block encoding (Go's `huffmanBitWriter`).

struct BitWriter {
    out: Vec<u8>,
    bits: u64,
    nbits: u32,
    literal_freq: Vec<i32>,
    offset_freq: Vec<i32>,
    codegen: Vec<u8>,
    codegen_freq: [i32; CODEGEN_CODE_COUNT],
    literal_enc: Huffman,
    offset_enc: Huffman,
    codegen_enc: Huffman,
    fixed_lit: Huffman,
    fixed_off: Huffman,
}

impl BitWriter {
    fn new() -> BitWriter {
        BitWriter {
            out: Vec::new(),
            bits: 0,
            nbits: 0,
            literal_freq: vec![0; MAX_NUM_LIT],
            offset_freq: vec![0; OFFSET_CODE_COUNT],
            codegen: vec![0; MAX_NUM_LIT + OFFSET_CODE_COUNT + 1],
            codegen_freq: [0; CODEGEN_CODE_COUNT],
            literal_enc: Huffman::new(MAX_NUM_LIT),
            offset_enc: Huffman::new(OFFSET_CODE_COUNT),
            codegen_enc: Huffman::new(CODEGEN_CODE_COUNT),
            fixed_lit: Huffman::fixed_literal(),
            fixed_off: Huffman::fixed_offset(),
        }
    }

    fn write_bits(&mut self, value: u32, n: u32) {
        self.bits |= (value as u64) << self.nbits;
        self.nbits += n;
        while self.nbits >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits -= 8;
        }
    }

    /// Pads to a byte boundary with zero bits.
    fn flush(&mut self) {
        if self.nbits > 0 {
            self.out.push(self.bits as u8);
        }
        self.bits = 0;
        self.nbits = 0;
    }

    fn write_stored_header(&mut self, length: usize, eof: bool) {
        self.write_bits(u32::from(eof), 3);
        self.flush();
        self.write_bits(length as u32, 16);
        self.write_bits(!(length as u16) as u32, 16);
    }

    fn index_tokens(&mut self, tokens: &[Token]) -> (usize, usize) {
        self.literal_freq.iter_mut().for_each(|f| *f = 0);
        self.offset_freq.iter_mut().for_each(|f| *f = 0);
        for t in tokens {
            match *t {
                Token::Literal(l) => self.literal_freq[l as usize] += 1,
                Token::Match { xlen, xoff } => {
                    self.literal_freq[LENGTH_CODES_START + length_code(xlen)] += 1;
                    self.offset_freq[offset_code(xoff)] += 1;
                }
            }
        }
        let mut num_lit = self.literal_freq.len();
        while self.literal_freq[num_lit - 1] == 0 {
            num_lit -= 1;
        }
        let mut num_off = self.offset_freq.len();
        while num_off > 0 && self.offset_freq[num_off - 1] == 0 {
            num_off -= 1;
        }
        if num_off == 0 {
            // A dynamic block needs at least one distance code.
            self.offset_freq[0] = 1;
            num_off = 1;
        }
        let lf = self.literal_freq.clone();
        self.literal_enc.generate(&lf, 15);
        let of = self.offset_freq.clone();
        self.offset_enc.generate(&of, 15);
        (num_lit, num_off)
    }

    /// Run-length codes for the code lengths (RFC 1951 3.2.7).
    fn generate_codegen(&mut self, num_lit: usize, num_off: usize) {
        self.codegen_freq = [0; CODEGEN_CODE_COUNT];
        let mut lens: Vec<u8> = Vec::with_capacity(num_lit + num_off + 1);
        lens.extend(self.literal_enc.len[..num_lit].iter().map(|&l| l as u8));
        lens.extend(self.offset_enc.len[..num_off].iter().map(|&l| l as u8));
        lens.push(BAD_CODE);
        let mut out: Vec<u8> = Vec::new();
        let mut size = lens[0];
        let mut count: i32 = 1;
        let mut i = 1;
        while size != BAD_CODE {
            let next = lens[i];
            i += 1;
            if next == size {
                count += 1;
                continue;
            }
            if size != 0 {
                out.push(size);
                self.codegen_freq[size as usize] += 1;
                count -= 1;
                while count >= 3 {
                    let n = count.min(6);
                    out.push(16);
                    out.push((n - 3) as u8);
                    self.codegen_freq[16] += 1;
                    count -= n;
                }
            } else {
                while count >= 11 {
                    let n = count.min(138);
                    out.push(18);
                    out.push((n - 11) as u8);
                    self.codegen_freq[18] += 1;
                    count -= n;
                }
                if count >= 3 {
                    out.push(17);
                    out.push((count - 3) as u8);
                    self.codegen_freq[17] += 1;
                    count = 0;
                }
            }
            while count > 0 {
                out.push(size);
                self.codegen_freq[size as usize] += 1;
                count -= 1;
            }
            size = next;
            count = 1;
        }
        out.push(BAD_CODE);
        self.codegen = out;
    }

    fn dynamic_size(&self, extra_bits: usize) -> (usize, usize) {
        let mut num_codegens = CODEGEN_CODE_COUNT;
        while num_codegens > 4 && self.codegen_freq[CODEGEN_ORDER[num_codegens - 1]] == 0 {
            num_codegens -= 1;
        }
        let header = 3
            + 5
            + 5
            + 4
            + 3 * num_codegens
            + self.codegen_enc.bit_length(&self.codegen_freq)
            + self.codegen_freq[16] as usize * 2
            + self.codegen_freq[17] as usize * 3
            + self.codegen_freq[18] as usize * 7;
        let size = header
            + self.literal_enc.bit_length(&self.literal_freq)
            + self.offset_enc.bit_length(&self.offset_freq)
            + extra_bits;
        (size, num_codegens)
    }

    fn fixed_size(&self, extra_bits: usize) -> usize {
        3 + self.fixed_lit.bit_length(&self.literal_freq)
            + self.fixed_off.bit_length(&self.offset_freq)
            + extra_bits
    }

    fn write_code(&mut self, h: &Huffman, sym: usize) {
        let (code, len) = (h.code[sym], h.len[sym]);
        self.write_bits(code as u32, len as u32);
    }

    fn write_dynamic_header(
        &mut self,
        num_lit: usize,
        num_off: usize,
        num_codegens: usize,
        eof: bool,
    ) {
        self.write_bits(if eof { 5 } else { 4 }, 3);
        self.write_bits((num_lit - 257) as u32, 5);
        self.write_bits((num_off - 1) as u32, 5);
        self.write_bits((num_codegens - 4) as u32, 4);
        for &sym in CODEGEN_ORDER.iter().take(num_codegens) {
            let len = self.codegen_enc.len[sym];
            self.write_bits(len as u32, 3);
        }
        let codegen = std::mem::take(&mut self.codegen);
        let enc = self.codegen_enc.clone();
        let mut i = 0;
        loop {
            let word = codegen[i];
            i += 1;
            if word == BAD_CODE {
                break;
            }
            self.write_code(&enc, word as usize);
            let extra = match word {
                16 => 2,
                17 => 3,
                18 => 7,
                _ => 0,
            };
            if extra > 0 {
                self.write_bits(codegen[i] as u32, extra);
                i += 1;
            }
        }
        self.codegen = codegen;
    }

    fn write_tokens(&mut self, tokens: &[Token], lit: &Huffman, off: &Huffman) {
        for t in tokens {
            match *t {
                Token::Literal(l) => self.write_code(lit, l as usize),
                Token::Match { xlen, xoff } => {
                    let lc = length_code(xlen);
                    self.write_code(lit, lc + LENGTH_CODES_START);
                    let eb = LENGTH_EXTRA_BITS[lc] as u32;
                    if eb > 0 {
                        self.write_bits(xlen - LENGTH_BASE[lc], eb);
                    }
                    let oc = offset_code(xoff);
                    self.write_code(off, oc);
                    let eb = OFFSET_EXTRA_BITS[oc] as u32;
                    if eb > 0 {
                        self.write_bits(xoff - OFFSET_BASE[oc], eb);
                    }
                }
            }
        }
    }

    /// Writes one block with the smallest of stored, fixed and dynamic encodings.
    fn write_block(&mut self, tokens: &[Token], eof: bool, input: Option<&[u8]>) {
        let mut tokens = tokens.to_vec();
        tokens.push(Token::Literal(END_BLOCK));
        let (num_lit, num_off) = self.index_tokens(&tokens);
        let storable = input.is_some_and(|i| i.len() <= MAX_STORE_BLOCK);
        let stored_size = input.map_or(0, |i| (i.len() + 5) * 8);
        let mut extra_bits = 0;
        if storable {
            for lc in LENGTH_CODES_START + 8..num_lit {
                extra_bits += self.literal_freq[lc] as usize
                    * LENGTH_EXTRA_BITS[lc - LENGTH_CODES_START] as usize;
            }
            extra_bits += self
                .offset_freq
                .iter()
                .zip(OFFSET_EXTRA_BITS)
                .take(num_off)
                .skip(4)
                .map(|(&f, e)| f as usize * e as usize)
                .sum::<usize>();
        }
        let mut size = self.fixed_size(extra_bits);
        self.generate_codegen(num_lit, num_off);
        let cf = self.codegen_freq;
        self.codegen_enc.generate(&cf, 7);
        let (dyn_size, num_codegens) = self.dynamic_size(extra_bits);
        let dynamic = dyn_size < size;
        if dynamic {
            size = dyn_size;
        }
        if let Some(input) = input.filter(|_| storable && stored_size < size) {
            self.write_stored_header(input.len(), eof);
            self.flush();
            self.out.extend_from_slice(input);
            return;
        }
        if dynamic {
            self.write_dynamic_header(num_lit, num_off, num_codegens, eof);
            let (lit, off) = (self.literal_enc.clone(), self.offset_enc.clone());
            self.write_tokens(&tokens, &lit, &off);
        } else {
            self.write_bits(if eof { 3 } else { 2 }, 3);
            let (lit, off) = (self.fixed_lit.clone(), self.fixed_off.clone());
            self.write_tokens(&tokens, &lit, &off);
        }
    }
}

// ---------------------------------------------------------------------------
// The LZ77 stage (Go's `compressor` with `deflate` as its step).

struct Compressor {
    w: BitWriter,
    window: Vec<u8>,
    window_end: usize,
    index: usize,
    block_start: usize,
    byte_available: bool,
    tokens: Vec<Token>,
    hash_head: Vec<u32>,
    hash_prev: Vec<u32>,
    hash_offset: usize,
    chain_head: i64,
    length: usize,
    offset: usize,
    max_insert_index: usize,
    sync: bool,
}

impl Compressor {
    fn new() -> Compressor {
        Compressor {
            w: BitWriter::new(),
            window: vec![0; 2 * WINDOW_SIZE],
            window_end: 0,
            index: 0,
            block_start: 0,
            byte_available: false,
            tokens: Vec::with_capacity(MAX_BLOCK_TOKENS + 1),
            hash_head: vec![0; HASH_SIZE],
            hash_prev: vec![0; WINDOW_SIZE],
            hash_offset: 1,
            chain_head: -1,
            length: MIN_MATCH - 1,
            offset: 0,
            max_insert_index: 0,
            sync: false,
        }
    }

    fn fill(&mut self, b: &[u8]) -> usize {
        if self.index >= 2 * WINDOW_SIZE - (MIN_MATCH + MAX_MATCH) {
            self.window.copy_within(WINDOW_SIZE..2 * WINDOW_SIZE, 0);
            self.index -= WINDOW_SIZE;
            self.window_end -= WINDOW_SIZE;
            self.block_start = if self.block_start >= WINDOW_SIZE {
                self.block_start - WINDOW_SIZE
            } else {
                usize::MAX
            };
            self.hash_offset += WINDOW_SIZE;
            if self.hash_offset > MAX_HASH_OFFSET {
                let delta = self.hash_offset - 1;
                self.hash_offset -= delta;
                self.chain_head -= delta as i64;
                for v in self.hash_prev.iter_mut().chain(self.hash_head.iter_mut()) {
                    *v = if *v as usize > delta {
                        (*v as usize - delta) as u32
                    } else {
                        0
                    };
                }
            }
        }
        let n = b.len().min(self.window.len() - self.window_end);
        self.window[self.window_end..self.window_end + n].copy_from_slice(&b[..n]);
        self.window_end += n;
        n
    }

    fn write_block(&mut self, index: usize) {
        if index > 0 {
            let input =
                (self.block_start <= index).then(|| self.window[self.block_start..index].to_vec());
            self.block_start = index;
            let tokens = std::mem::take(&mut self.tokens);
            self.w.write_block(&tokens, false, input.as_deref());
        }
    }

    fn find_match(
        &self,
        pos: usize,
        prev_head: usize,
        prev_length: usize,
        lookahead: usize,
    ) -> Option<(usize, usize)> {
        let min_look = MAX_MATCH.min(lookahead);
        let win = &self.window[..pos + min_look];
        let nice = NICE.min(win.len() - pos);
        let mut tries = CHAIN;
        let mut length = prev_length;
        if length >= GOOD {
            tries >>= 2;
        }
        let mut w_end = win[pos + length];
        let w_pos = &win[pos..];
        let min_index = pos as i64 - WINDOW_SIZE as i64;
        let mut found = None;
        let mut i = prev_head as i64;
        while tries > 0 {
            let iu = i as usize;
            if w_end == win[iu + length] {
                let n = win[iu..]
                    .iter()
                    .zip(&w_pos[..min_look])
                    .take_while(|(a, b)| a == b)
                    .count();
                if n > length && (n > MIN_MATCH || pos - iu <= 4096) {
                    length = n;
                    found = Some((n, pos - iu));
                    if n >= nice {
                        break;
                    }
                    w_end = win[pos + n];
                }
            }
            if i == min_index {
                break;
            }
            i = self.hash_prev[iu & WINDOW_MASK] as i64 - self.hash_offset as i64;
            if i < min_index || i < 0 {
                break;
            }
            tries -= 1;
        }
        found
    }

    fn insert_hash(&mut self, at: usize) {
        let h = hash4(&self.window[at..at + MIN_MATCH]);
        let hh = &mut self.hash_head[(h & HASH_MASK) as usize];
        self.hash_prev[at & WINDOW_MASK] = *hh;
        *hh = (at + self.hash_offset) as u32;
    }

    fn deflate(&mut self) {
        if self.window_end - self.index < MIN_MATCH + MAX_MATCH && !self.sync {
            return;
        }
        self.max_insert_index = self.window_end.saturating_sub(MIN_MATCH - 1);
        loop {
            let lookahead = self.window_end - self.index;
            if lookahead < MIN_MATCH + MAX_MATCH {
                if !self.sync {
                    break;
                }
                if lookahead == 0 {
                    if self.byte_available {
                        self.tokens
                            .push(Token::Literal(self.window[self.index - 1] as u32));
                        self.byte_available = false;
                    }
                    if !self.tokens.is_empty() {
                        self.write_block(self.index);
                    }
                    break;
                }
            }
            if self.index < self.max_insert_index {
                let h = hash4(&self.window[self.index..self.index + MIN_MATCH]);
                let hh = &mut self.hash_head[(h & HASH_MASK) as usize];
                self.chain_head = *hh as i64;
                self.hash_prev[self.index & WINDOW_MASK] = *hh;
                *hh = (self.index + self.hash_offset) as u32;
            }
            let prev_length = self.length;
            let prev_offset = self.offset;
            self.length = MIN_MATCH - 1;
            self.offset = 0;
            let min_index = self.index.saturating_sub(WINDOW_SIZE) as i64;
            let head = self.chain_head - self.hash_offset as i64;
            if head >= min_index && lookahead > prev_length && prev_length < LAZY {
                if let Some((l, o)) =
                    self.find_match(self.index, head as usize, MIN_MATCH - 1, lookahead)
                {
                    self.length = l;
                    self.offset = o;
                }
            }
            if prev_length >= MIN_MATCH && self.length <= prev_length {
                // The previous match is at least as good: emit it.
                self.tokens.push(Token::Match {
                    xlen: (prev_length - BASE_MATCH_LENGTH) as u32,
                    xoff: (prev_offset - BASE_MATCH_OFFSET) as u32,
                });
                let new_index = self.index + prev_length - 1;
                self.index += 1;
                while self.index < new_index {
                    if self.index < self.max_insert_index {
                        self.insert_hash(self.index);
                    }
                    self.index += 1;
                }
                self.byte_available = false;
                self.length = MIN_MATCH - 1;
                if self.tokens.len() == MAX_BLOCK_TOKENS {
                    self.write_block(self.index);
                }
            } else {
                if self.byte_available {
                    let i = self.index - 1;
                    self.tokens.push(Token::Literal(self.window[i] as u32));
                    if self.tokens.len() == MAX_BLOCK_TOKENS {
                        self.write_block(i + 1);
                    }
                }
                self.index += 1;
                self.byte_available = true;
            }
        }
    }

    fn write(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            self.deflate();
            let n = self.fill(b);
            b = &b[n..];
        }
    }

    fn close(mut self) -> Vec<u8> {
        self.sync = true;
        self.deflate();
        self.w.write_stored_header(0, true);
        self.w.flush();
        self.w.out
    }
}

/// Raw deflate of `data`, byte-identical to Go's `flate.NewWriter(w, 9)` + one
/// `Write` + `Close`.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compressor::new();
    c.write(data);
    c.close()
}

/// gzip of `data` as Go's `gzip.NewWriterLevel(w, gzip.BestCompression)`
/// writes it: no name, mtime 0, XFL 2, OS 255.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
    out.extend(deflate(data));
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend(crc.sum().to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8]) {
        let gz = gzip(data);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, data);
    }

    #[test]
    fn output_decodes() {
        roundtrip(b"");
        roundtrip(b"a");
        roundtrip(b"hello hello hello hello hello\n");
        let text: Vec<u8> = (0..200_000u32)
            .map(|i| b"the quick brown fox jumps over the lazy dog"[(i * 7 % 43) as usize])
            .collect();
        roundtrip(&text);
        let noise: Vec<u8> = (0..70_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        roundtrip(&noise);
    }

    #[test]
    fn empty_input_is_go_framing() {
        // Go: no data block, then the final empty stored block.
        assert_eq!(deflate(b""), vec![0x01, 0x00, 0x00, 0xff, 0xff]);
    }
}
