//! The xz container around an LZMA2 stream, for static-delta parts.
//!
//! Upstream compresses parts with liblzma's `lzma_easy_encoder(8,
//! LZMA_CHECK_CRC64)`. lzma-rust2 (a port of XZ for Java) provides the
//! LZMA2 encoder; its own xz writer would pull in a second SHA-2 stack, and
//! the container is a few fixed fields, so it is written here: one block,
//! CRC64 check, as liblzma writes it. lzma-rs decodes it (and upstream's).

use crate::{Error, Result};
use lzma_rust2::{Lzma2Options, Lzma2Writer};
use std::io::Write;

const MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
const FOOTER_MAGIC: [u8; 2] = [b'Y', b'Z'];
/// Stream flags: check type 0x04 = CRC64.
const STREAM_FLAGS: [u8; 2] = [0, 0x04];
const FILTER_LZMA2: u8 = 0x21;
/// Smallest dictionary LZMA2 encoders accept.
const MIN_DICT: u32 = 4096;

// xz's multibyte integers are the LEB128 varints the delta bytecode uses.
use crate::delta::put_varint;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

fn pad4(out: &mut Vec<u8>, from: usize) {
    while !(out.len() - from).is_multiple_of(4) {
        out.push(0);
    }
}

/// The LZMA2 filter property byte for a dictionary of at least `dict`
/// bytes: sizes are 2^n or 3·2^(n-1), coded as `2·(n-12)` or one more.
fn dict_property(dict: u32) -> u8 {
    (0u8..40)
        .find(|&c| (2u64 | u64::from(c & 1)) << (c / 2 + 11) >= u64::from(dict))
        .unwrap_or(40)
}

/// Compresses `data` into a complete `.xz` stream at `preset` (0–9).
///
/// The dictionary is the preset's, but never larger than the input rounded
/// up to a power of two: a bigger one finds nothing more, and the encoder's
/// match finder allocates several times the dictionary size.
pub fn compress(data: &[u8], preset: u32) -> Result<Vec<u8>> {
    let mut opts = Lzma2Options::with_preset(preset);
    let fit = u32::try_from(data.len())
        .ok()
        .and_then(u32::checked_next_power_of_two)
        .unwrap_or(u32::MAX);
    opts.lzma_options.dict_size = opts.lzma_options.dict_size.min(fit).max(MIN_DICT);
    let dict = opts.lzma_options.dict_size;

    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&STREAM_FLAGS);
    out.extend_from_slice(&CRC32.checksum(&STREAM_FLAGS).to_le_bytes());

    let block_start = out.len();
    // Header size byte (filled below), flags: one filter, no sizes.
    out.extend_from_slice(&[0, 0, FILTER_LZMA2, 1, dict_property(dict)]);
    pad4(&mut out, block_start);
    let header_len = out.len() - block_start + 4;
    out[block_start] = (header_len / 4 - 1) as u8;
    let crc = CRC32.checksum(&out[block_start..]);
    out.extend_from_slice(&crc.to_le_bytes());

    let data_start = out.len();
    let mut w = Lzma2Writer::new(out, opts);
    w.write_all(data)
        .map_err(|e| Error::io("compressing delta part (LZMA2)", e))?;
    let mut out = w
        .finish()
        .map_err(|e| Error::io("finishing delta part compression (LZMA2)", e))?;
    let unpadded = header_len + (out.len() - data_start) + 8;
    pad4(&mut out, block_start);
    out.extend_from_slice(&CRC64.checksum(data).to_le_bytes());

    let index_start = out.len();
    out.push(0);
    put_varint(&mut out, 1);
    put_varint(&mut out, unpadded as u64);
    put_varint(&mut out, data.len() as u64);
    pad4(&mut out, index_start);
    let crc = CRC32.checksum(&out[index_start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    let index_len = out.len() - index_start;

    let mut footer = Vec::with_capacity(6);
    footer.extend_from_slice(&((index_len / 4 - 1) as u32).to_le_bytes());
    footer.extend_from_slice(&STREAM_FLAGS);
    out.extend_from_slice(&CRC32.checksum(&footer).to_le_bytes());
    out.extend_from_slice(&footer);
    out.extend_from_slice(&FOOTER_MAGIC);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decompress(xz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut std::io::Cursor::new(xz), &mut out).unwrap();
        out
    }

    #[test]
    fn roundtrips_through_lzma_rs() {
        let mut x = 1u32;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        for data in [
            Vec::new(),
            b"a".to_vec(),
            vec![0; 1 << 20],
            noise.clone(),
            [noise.as_slice(), &[7; 100_000], &noise[..1000]].concat(),
        ] {
            let xz = compress(&data, 8).unwrap();
            assert_eq!(decompress(&xz), data, "{} bytes", data.len());
            assert!(xz.len().is_multiple_of(4));
        }
    }

    #[test]
    fn compresses() {
        // What bsdiff patches of small edits look like: mostly zeros.
        let mut data = vec![0u8; 1 << 20];
        data[1000] = 1;
        data[500_000] = 2;
        assert!(compress(&data, 8).unwrap().len() < 1000);
    }

    #[test]
    fn dictionary_property_codes() {
        assert_eq!(dict_property(4096), 0);
        assert_eq!(dict_property(4097), 1);
        assert_eq!(dict_property(6144), 1);
        assert_eq!(dict_property(8192), 2);
        assert_eq!(dict_property(32 << 20), 26);
        assert_eq!(dict_property(u32::MAX), 40);
    }
}
