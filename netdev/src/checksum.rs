//! The Internet checksum's sum (RFC 1071), shared by the protocol code (`ustack::wire::checksum`) and the
//! devices here, which complete checksums the kernel left to offload.

/// Adds `data` to a running ones'-complement sum (not yet folded). An odd final byte is padded with zero, as
/// RFC 1071 section 4.1 does.
///
/// The bulk is summed as native-endian words into wide accumulators and put in big-endian order once at the
/// end: RFC 1071 section 2(B) ("byte order independence") makes that equal to summing big-endian 16-bit
/// words, and section 2(C) ("parallel summation") lets the carries wait in the upper bits until the fold.
/// Unlike an add-with-carry chain, each addition is independent of the last one's carry, so it runs in
/// vector lanes.
#[link_section = ".text.hot.ustack"]
pub fn add(sum: u64, data: &[u8]) -> u64 {
    if data.len() < SHORT {
        add_short_outlined(sum, data)
    } else {
        add_long(sum, data)
    }
}

/// [`add`] for data of at least [`SHORT`] bytes: the widest loop the CPU runs.
#[inline(never)]
#[link_section = ".text.hot.ustack"]
fn add_long(sum: u64, data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512bw") {
            // SAFETY: `add_avx512` needs only AVX-512F and AVX-512BW, which the CPU was just seen to have.
            return unsafe { x86::add_avx512(sum, data) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: `add_avx2` needs only AVX2, which the CPU was just seen to have.
            return unsafe { x86::add_avx2(sum, data) };
        }
    }
    add_portable(sum, data)
}

/// [`add_short`] as a function of its own: kept apart from the long loops, whose many accumulators would make
/// every call save and restore registers that the short loop does not use.
#[inline(never)]
#[link_section = ".text.hot.ustack"]
fn add_short_outlined(sum: u64, data: &[u8]) -> u64 {
    add_short(sum, data)
}

/// [`add`] for exactly 20 bytes — an IPv4 header without options, the one a host verifies for every packet it
/// receives — in straight-line code: five 32-bit words, no loop and no length to test.
#[inline]
pub fn add_20(sum: u64, data: &[u8; 20]) -> u64 {
    let word = |at: usize| u64::from(u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]));
    sum + network_order(word(0) + word(4) + word(8) + word(12) + word(16))
}

/// Vector loops chosen at run time (the standard library caches the test of the CPU's features: one load per
/// call). x86-64's baseline is SSE2, on which the portable loop sums a 1460-byte payload in about 32 ns; the
/// AVX2 loop below takes 13 ns and the AVX-512 one 11.5 (8960 bytes: 57 and 42 ns), measured on the benchmark
/// machine with the data in L1.
///
/// Both use `pmaddwd`, which multiplies pairs of signed 16-bit words and adds each pair's products into a
/// 32-bit lane: multiplied by 1, it sums two words per lane in one instruction, where widening 32-bit words
/// to 64 bits (what the compiler makes of the portable loop) costs a shuffle per 16 bytes. It reads words as
/// signed, so every word is first offset by -32768 (its top bit flipped) and 32768 per word added back at the
/// end. A lane then gains at most 65536 in magnitude per block, so the 32-bit lanes are widened every `PASS`
/// bytes, before they could overflow (a frame is at most 64 KiB, one pass).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Bytes summed in 32-bit lanes before they are widened: 1 MiB, in which each lane of each accumulator
    /// takes 8,192 additions of at most 65,536 in magnitude (32,768 blocks over four accumulators for AVX2,
    /// 16,384 over two for AVX-512), a quarter of what an `i32` holds.
    const PASS: usize = 1 << 20;

    #[target_feature(enable = "avx2")]
    pub(super) fn add_avx2(sum: u64, data: &[u8]) -> u64 {
        let (whole, rest) = data.split_at(data.len() / 32 * 32);
        let total = whole.chunks(PASS).map(|pass| sum_blocks_avx2(pass)).sum();
        super::add_short(sum + super::network_order(total), rest)
    }

    /// The sum of the native-endian 16-bit words of `pass`, whose length is a multiple of 32, at most `PASS`.
    #[target_feature(enable = "avx2")]
    fn sum_blocks_avx2(pass: &[u8]) -> u64 {
        let load = |block: &[u8]| {
            let block: &[u8; 32] = block.try_into().expect("32-byte blocks");
            // SAFETY: `block` is 32 readable bytes, and an unaligned load reads exactly those.
            let words = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
            _mm256_madd_epi16(_mm256_xor_si256(words, _mm256_set1_epi16(i16::MIN)), _mm256_set1_epi16(1))
        };
        // Four independent accumulators, so the adds of one block need not wait for the last block's.
        let mut quads = pass.chunks_exact(128);
        let mut lanes = [_mm256_setzero_si256(); 4];
        for quad in &mut quads {
            for (lane, block) in lanes.iter_mut().zip(quad.chunks_exact(32)) {
                *lane = _mm256_add_epi32(*lane, load(block));
            }
        }
        for block in quads.remainder().chunks_exact(32) {
            lanes[0] = _mm256_add_epi32(lanes[0], load(block));
        }
        let lanes = _mm256_add_epi32(_mm256_add_epi32(lanes[0], lanes[1]), _mm256_add_epi32(lanes[2], lanes[3]));
        let wide = _mm256_add_epi64(
            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(lanes)),
            _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(lanes)),
        );
        let mut parts = [0i64; 4];
        // SAFETY: `parts` is 32 writable bytes, and an unaligned store writes exactly those.
        unsafe { _mm256_storeu_si256(parts.as_mut_ptr().cast(), wide) };
        unbias(parts.iter().sum(), pass.len())
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) fn add_avx512(sum: u64, data: &[u8]) -> u64 {
        let (whole, rest) = data.split_at(data.len() / 64 * 64);
        let total = whole.chunks(PASS).map(|pass| sum_blocks_avx512(pass)).sum();
        super::add_short(sum + super::network_order(total), rest)
    }

    /// The sum of the native-endian 16-bit words of `pass`, whose length is a multiple of 64, at most `PASS`.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn sum_blocks_avx512(pass: &[u8]) -> u64 {
        let load = |block: &[u8]| {
            let block: &[u8; 64] = block.try_into().expect("64-byte blocks");
            // SAFETY: `block` is 64 readable bytes, and an unaligned load reads exactly those.
            let words = unsafe { _mm512_loadu_si512(block.as_ptr().cast()) };
            _mm512_madd_epi16(_mm512_xor_si512(words, _mm512_set1_epi16(i16::MIN)), _mm512_set1_epi16(1))
        };
        let mut pairs = pass.chunks_exact(128);
        let mut lanes = [_mm512_setzero_si512(); 2];
        for pair in &mut pairs {
            for (lane, block) in lanes.iter_mut().zip(pair.chunks_exact(64)) {
                *lane = _mm512_add_epi32(*lane, load(block));
            }
        }
        for block in pairs.remainder().chunks_exact(64) {
            lanes[0] = _mm512_add_epi32(lanes[0], load(block));
        }
        let lanes = _mm512_add_epi32(lanes[0], lanes[1]);
        let wide = _mm512_add_epi64(
            _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lanes)),
            _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64::<1>(lanes)),
        );
        unbias(_mm512_reduce_add_epi64(wide), pass.len())
    }

    /// Adds back the 32768 taken from each of the `len / 2` words before `pmaddwd`.
    #[inline(always)]
    fn unbias(biased: i64, len: usize) -> u64 {
        (biased + 32_768 * (len as i64 / 2)) as u64
    }
}

/// Below this length (an IPv4 header, a pure ACK, a small request) the vector loop's set-up and final
/// reduction cost more than they save: such data is summed word by word.
const SHORT: usize = 128;

/// [`add`] for short data: native-endian 64-bit words into one accumulator, counting the carries out of it.
/// A carry out of bit 63 is worth 2^64, which is 1 modulo 0xffff like every power of 2^16, so the carries
/// are added back at the end (the end-around carry of RFC 1071 section 2(C), deferred). The last bytes (under
/// eight) go in as at most one 32-bit word, one 16-bit word and one byte, without a loop.
#[inline(always)]
fn add_short(sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let (mut acc, mut carries) = (0u64, 0u64);
    for w in &mut words {
        let (next, carried) = acc.overflowing_add(u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
        acc = next;
        carries += u64::from(carried);
    }
    let rest = words.remainder();
    let mut native = narrow(acc) + carries;
    let (four, rest) = rest.split_at(rest.len() & 4);
    if let [a, b, c, d] = *four {
        native += u64::from(u32::from_ne_bytes([a, b, c, d]));
    }
    let (two, rest) = rest.split_at(rest.len() & 2);
    if let [a, b] = *two {
        native += u64::from(u16::from_ne_bytes([a, b]));
    }
    if let [last] = *rest {
        // An odd last byte is the high half of a word padded with zero (RFC 1071 section 4.1).
        native += u64::from(u16::from_ne_bytes([last, 0]));
    }
    sum + network_order(native)
}

/// [`add`] in portable code, which the compiler vectorizes for the baseline target (SSE2 on x86-64).
#[inline(always)]
fn add_portable(sum: u64, data: &[u8]) -> u64 {
    // Eight independent lanes over 32-byte blocks: the shape the compiler turns into 16-byte vector loads.
    let mut blocks = data.chunks_exact(32);
    let mut lanes = [0u64; 8];
    for block in &mut blocks {
        add_block(&mut lanes, block);
    }
    add_short(sum + network_order(lanes.iter().sum()), blocks.remainder())
}

/// Adds one 32-byte block to eight native-endian 32-bit lanes.
#[inline(always)]
fn add_block(lanes: &mut [u64; 8], block: &[u8]) {
    for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
        *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
}

/// `sum` in at most 33 bits, equal modulo 0xffff (2^32 is 1 modulo 0xffff).
#[inline(always)]
fn narrow(sum: u64) -> u64 {
    (sum & 0xffff_ffff) + (sum >> 32)
}

/// A sum of native-endian words (16 bits or any multiple) as the sum of the big-endian 16-bit words the
/// checksum is defined on (RFC 1071 section 2(B)). A little-endian machine read each word `256a + b` as
/// `256b + a`, and `256 (256b + a) = 65536b + 256a`, which is `256a + b` modulo 0xffff: multiplying by 256
/// exchanges the bytes back, in every word at once and carries included, so nothing is folded to 16 bits
/// here.
#[inline(always)]
fn network_order(native: u64) -> u64 {
    let narrow = narrow(native); // under 2^34: shifted by 8 it cannot overflow
    if cfg!(target_endian = "little") {
        narrow << 8
    } else {
        narrow
    }
}

/// Folds a running sum into 16 bits.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sum RFC 1071 defines, word by word with end-around carry: the reference for the fast loops.
    fn reference(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn every_build_of_the_loop_agrees_with_the_definition() {
        let data: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect();
        for start in 0..4 {
            for end in (start..data.len()).step_by(7).chain([data.len()]) {
                let slice = &data[start..end];
                let want = reference(slice);
                // Ones'-complement zero has two forms; the reference never folds to 0 from non-zero data.
                assert_eq!(fold(add(0, slice)) % 0xffff, want % 0xffff, "dispatched, {start}..{end}");
                assert_eq!(fold(add_portable(0, slice)) % 0xffff, want % 0xffff, "portable, {start}..{end}");
                assert_eq!(fold(add_short(0, slice)) % 0xffff, want % 0xffff, "word by word, {start}..{end}");
                for (name, sum) in vector_builds(slice) {
                    assert_eq!(fold(sum) % 0xffff, want % 0xffff, "{name}, {start}..{end}");
                }
            }
        }
    }

    /// The vector loops this CPU can run, each applied to `data`.
    fn vector_builds(data: &[u8]) -> Vec<(&'static str, u64)> {
        let mut sums = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                sums.push(("avx2", unsafe { x86::add_avx2(0, data) }));
            }
            if std::is_x86_feature_detected!("avx512bw") {
                // SAFETY: the CPU has AVX-512F and AVX-512BW.
                sums.push(("avx512", unsafe { x86::add_avx512(0, data) }));
            }
        }
        let _ = data;
        sums
    }

    #[test]
    fn twenty_bytes_in_straight_line_match_the_loop() {
        let data: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for (i, chunk) in data.windows(20).enumerate() {
            let header: &[u8; 20] = chunk.try_into().unwrap();
            assert_eq!(fold(add_20(i as u64, header)) % 0xffff, fold(add(i as u64, chunk)) % 0xffff);
        }
        assert_eq!(fold(add_20(0, &[0xff; 20])), 0xffff);
        assert_eq!(fold(add_20(0, &[0; 20])), 0);
    }

    #[test]
    fn extreme_words_over_several_passes_sum_without_overflow() {
        // All-ones and all-zero words are the extremes the vector loops' 32-bit lanes see (65,534 and -65,536
        // per block once offset). 8 MiB is eight passes: summed as one, each lane would take 65,536 of them and
        // overflow.
        for byte in [0xff, 0] {
            for len in [1 << 16, 8 << 20, (8 << 20) + 37] {
                let words = vec![byte; len];
                let want = reference(&words);
                assert_eq!(fold(add(0, &words)) % 0xffff, want % 0xffff, "dispatched, {len} bytes of {byte:#x}");
                for (name, sum) in vector_builds(&words) {
                    assert_eq!(fold(sum) % 0xffff, want % 0xffff, "{name}, {len} bytes of {byte:#x}");
                }
            }
        }
        let zeros_then_ones: Vec<u8> = (0..70_000u32).map(|i| if i % 4 < 2 { 0 } else { 0xff }).collect();
        let want = reference(&zeros_then_ones);
        for (name, sum) in vector_builds(&zeros_then_ones) {
            assert_eq!(fold(sum) % 0xffff, want % 0xffff, "{name}, alternating words");
        }
    }
}
