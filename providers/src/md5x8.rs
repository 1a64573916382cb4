//! MD5 of eight messages at once, one per 32-bit lane of AVX2 registers: revision ids are
//! MD5 digests (see `rev.rs`), and a bulk save hashes a thousand of them, each over a
//! kilobyte or more. One stream of MD5 cannot go faster than its chain of dependent
//! additions (md-5's assembly: ~2.3 µs per 1.1 KB term here); eight independent streams
//! share each instruction (~0.7 µs each).
//!
//! Invariant: `digests` returns exactly md-5's digest of each message; machines without
//! AVX2 (or not x86-64) get md-5 itself. The tests compare the two on lengths around every
//! padding boundary, on the RFC 1321 cases, and on lanes of unequal lengths.

use md5::{Digest, Md5};

/// The MD5 digest of each of `messages`, in order.
pub(crate) fn digests(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let mut out = Vec::with_capacity(messages.len());
        for group in messages.chunks(8) {
            // A short last group fills its spare lanes with its own first message.
            let lanes: [&[u8]; 8] = std::array::from_fn(|l| group[l % group.len()]);
            // SAFETY: the CPU has AVX2 (checked just above).
            let lane_digests = unsafe { avx2::digest8(&lanes) };
            out.extend_from_slice(&lane_digests[..group.len()]);
        }
        return out;
    }
    messages.iter().map(|m| one(m)).collect()
}

/// One message's digest, by md-5.
fn one(message: &[u8]) -> [u8; 16] {
    Md5::digest(message).into()
}

/// A message's blocks as MD5 reads them: the whole 64-byte blocks straight from the
/// message, then one or two blocks holding its tail, the `0x80` marker, zeros and the bit
/// length (little-endian).
struct Padded<'m> {
    message: &'m [u8],
    whole: usize,
    tail: [u8; 128],
    blocks: usize,
}

impl<'m> Padded<'m> {
    fn new(message: &'m [u8]) -> Self {
        let whole = message.len() / 64;
        let rest = &message[whole * 64..];
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let bits = (message.len() as u64).wrapping_mul(8);
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Self {
            message,
            whole,
            tail,
            blocks: whole + tail_blocks,
        }
    }

    /// Block `n`; past the last, the last again (a lane that is done hashes a copy, and
    /// its result is not read).
    fn block(&self, n: usize) -> &[u8; 64] {
        let n = n.min(self.blocks - 1);
        let bytes = if n < self.whole {
            &self.message[n * 64..n * 64 + 64]
        } else {
            let t = (n - self.whole) * 64;
            &self.tail[t..t + 64]
        };
        bytes.try_into().unwrap_or(&[0; 64])
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Padded;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(x: __m256i, y: __m256i) -> __m256i {
        _mm256_add_epi32(x, y)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn rotl<const L: i32, const R: i32>(x: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi32::<L>(x), _mm256_srli_epi32::<R>(x))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn f(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        // (b & c) | (!b & d)
        _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn g(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        // (b & d) | (c & !d)
        _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn h(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        _mm256_xor_si256(_mm256_xor_si256(b, c), d)
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn i(b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        // c ^ (b | !d)
        let not_d = _mm256_xor_si256(d, _mm256_set1_epi32(-1));
        _mm256_xor_si256(c, _mm256_or_si256(b, not_d))
    }

    /// Word `i` (little-endian) of each lane's block, lane 0 lowest.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn words(blocks: &[&[u8; 64]; 8], i: usize) -> __m256i {
        let word = |l: usize| {
            let b = blocks[l];
            i32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
        };
        _mm256_set_epi32(
            word(7),
            word(6),
            word(5),
            word(4),
            word(3),
            word(2),
            word(1),
            word(0),
        )
    }

    /// One MD5 step on every lane: `a = b + ((a + fun(b, c, d) + w + k) <<< s)`.
    macro_rules! step {
        ($fun:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:literal, $s:literal) => {
            let t = add(
                add($a, $fun($b, $c, $d)),
                add($w, _mm256_set1_epi32($k as u32 as i32)),
            );
            $a = add($b, rotl::<$s, { 32 - $s }>(t));
        };
    }

    /// The digests of eight messages.
    #[target_feature(enable = "avx2")]
    pub(super) fn digest8(messages: &[&[u8]; 8]) -> [[u8; 16]; 8] {
        let padded: [Padded<'_>; 8] = std::array::from_fn(|l| Padded::new(messages[l]));
        let most = padded.iter().map(|p| p.blocks).max().unwrap_or(1);
        let mut a = _mm256_set1_epi32(0x67452301u32 as i32);
        let mut b = _mm256_set1_epi32(0xefcdab89u32 as i32);
        let mut c = _mm256_set1_epi32(0x98badcfeu32 as i32);
        let mut d = _mm256_set1_epi32(0x10325476u32 as i32);
        let mut out = [[0u8; 16]; 8];
        for n in 0..most {
            let blocks: [&[u8; 64]; 8] = std::array::from_fn(|l| padded[l].block(n));
            let w: [__m256i; 16] = std::array::from_fn(|i| words(&blocks, i));
            let (a0, b0, c0, d0) = (a, b, c, d);
            step!(f, a, b, c, d, w[0], 0xd76aa478, 7);
            step!(f, d, a, b, c, w[1], 0xe8c7b756, 12);
            step!(f, c, d, a, b, w[2], 0x242070db, 17);
            step!(f, b, c, d, a, w[3], 0xc1bdceee, 22);
            step!(f, a, b, c, d, w[4], 0xf57c0faf, 7);
            step!(f, d, a, b, c, w[5], 0x4787c62a, 12);
            step!(f, c, d, a, b, w[6], 0xa8304613, 17);
            step!(f, b, c, d, a, w[7], 0xfd469501, 22);
            step!(f, a, b, c, d, w[8], 0x698098d8, 7);
            step!(f, d, a, b, c, w[9], 0x8b44f7af, 12);
            step!(f, c, d, a, b, w[10], 0xffff5bb1, 17);
            step!(f, b, c, d, a, w[11], 0x895cd7be, 22);
            step!(f, a, b, c, d, w[12], 0x6b901122, 7);
            step!(f, d, a, b, c, w[13], 0xfd987193, 12);
            step!(f, c, d, a, b, w[14], 0xa679438e, 17);
            step!(f, b, c, d, a, w[15], 0x49b40821, 22);
            step!(g, a, b, c, d, w[1], 0xf61e2562, 5);
            step!(g, d, a, b, c, w[6], 0xc040b340, 9);
            step!(g, c, d, a, b, w[11], 0x265e5a51, 14);
            step!(g, b, c, d, a, w[0], 0xe9b6c7aa, 20);
            step!(g, a, b, c, d, w[5], 0xd62f105d, 5);
            step!(g, d, a, b, c, w[10], 0x02441453, 9);
            step!(g, c, d, a, b, w[15], 0xd8a1e681, 14);
            step!(g, b, c, d, a, w[4], 0xe7d3fbc8, 20);
            step!(g, a, b, c, d, w[9], 0x21e1cde6, 5);
            step!(g, d, a, b, c, w[14], 0xc33707d6, 9);
            step!(g, c, d, a, b, w[3], 0xf4d50d87, 14);
            step!(g, b, c, d, a, w[8], 0x455a14ed, 20);
            step!(g, a, b, c, d, w[13], 0xa9e3e905, 5);
            step!(g, d, a, b, c, w[2], 0xfcefa3f8, 9);
            step!(g, c, d, a, b, w[7], 0x676f02d9, 14);
            step!(g, b, c, d, a, w[12], 0x8d2a4c8a, 20);
            step!(h, a, b, c, d, w[5], 0xfffa3942, 4);
            step!(h, d, a, b, c, w[8], 0x8771f681, 11);
            step!(h, c, d, a, b, w[11], 0x6d9d6122, 16);
            step!(h, b, c, d, a, w[14], 0xfde5380c, 23);
            step!(h, a, b, c, d, w[1], 0xa4beea44, 4);
            step!(h, d, a, b, c, w[4], 0x4bdecfa9, 11);
            step!(h, c, d, a, b, w[7], 0xf6bb4b60, 16);
            step!(h, b, c, d, a, w[10], 0xbebfbc70, 23);
            step!(h, a, b, c, d, w[13], 0x289b7ec6, 4);
            step!(h, d, a, b, c, w[0], 0xeaa127fa, 11);
            step!(h, c, d, a, b, w[3], 0xd4ef3085, 16);
            step!(h, b, c, d, a, w[6], 0x04881d05, 23);
            step!(h, a, b, c, d, w[9], 0xd9d4d039, 4);
            step!(h, d, a, b, c, w[12], 0xe6db99e5, 11);
            step!(h, c, d, a, b, w[15], 0x1fa27cf8, 16);
            step!(h, b, c, d, a, w[2], 0xc4ac5665, 23);
            step!(i, a, b, c, d, w[0], 0xf4292244, 6);
            step!(i, d, a, b, c, w[7], 0x432aff97, 10);
            step!(i, c, d, a, b, w[14], 0xab9423a7, 15);
            step!(i, b, c, d, a, w[5], 0xfc93a039, 21);
            step!(i, a, b, c, d, w[12], 0x655b59c3, 6);
            step!(i, d, a, b, c, w[3], 0x8f0ccc92, 10);
            step!(i, c, d, a, b, w[10], 0xffeff47d, 15);
            step!(i, b, c, d, a, w[1], 0x85845dd1, 21);
            step!(i, a, b, c, d, w[8], 0x6fa87e4f, 6);
            step!(i, d, a, b, c, w[15], 0xfe2ce6e0, 10);
            step!(i, c, d, a, b, w[6], 0xa3014314, 15);
            step!(i, b, c, d, a, w[13], 0x4e0811a1, 21);
            step!(i, a, b, c, d, w[4], 0xf7537e82, 6);
            step!(i, d, a, b, c, w[11], 0xbd3af235, 10);
            step!(i, c, d, a, b, w[2], 0x2ad7d2bb, 15);
            step!(i, b, c, d, a, w[9], 0xeb86d391, 21);
            a = add(a, a0);
            b = add(b, b0);
            c = add(c, c0);
            d = add(d, d0);
            if padded.iter().any(|p| p.blocks == n + 1) {
                let mut state = [[0i32; 8]; 4];
                for (lanes, v) in state.iter_mut().zip([a, b, c, d]) {
                    // SAFETY: `lanes` is 32 writable bytes; storeu needs no alignment.
                    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
                }
                for (l, p) in padded.iter().enumerate() {
                    if p.blocks == n + 1 {
                        for (word, lanes) in state.iter().enumerate() {
                            out[l][4 * word..4 * word + 4].copy_from_slice(&lanes[l].to_le_bytes());
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8; 16]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_1321_cases() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"a", "0cc175b9c0f1b6a831c399e269772661"),
            (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
            (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                b"abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        let messages: Vec<&[u8]> = cases.iter().map(|(m, _)| *m).collect();
        let got = digests(&messages);
        for ((_, want), got) in cases.iter().zip(&got) {
            assert_eq!(hex(got), *want);
        }
    }

    /// Every length from 0 to 300 (each padding boundary several times over) and lengths
    /// around a kilobyte, in groups of unequal lengths and of every group size, against md-5.
    #[test]
    fn equals_md5_on_every_length_and_group() {
        let data: Vec<u8> = (0..4010u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut lengths: Vec<usize> = (0..=300).collect();
        lengths.extend(1000..1200);
        lengths.push(3999);
        let messages: Vec<&[u8]> = lengths
            .iter()
            .enumerate()
            .map(|(k, &len)| &data[k % 7..k % 7 + len])
            .collect();
        for take in [1, 2, 7, 8, 9, 15, 16, 17, messages.len()] {
            for start in [0, 3, 250] {
                let group =
                    &messages[start.min(messages.len())..(start + take).min(messages.len())];
                let got = digests(group);
                assert_eq!(got.len(), group.len());
                for (m, d) in group.iter().zip(&got) {
                    assert_eq!(*d, one(m), "length {}", m.len());
                }
            }
        }
    }
}
