//! The Internet checksum's sum (RFC 1071), shared by the protocol code (`ustack::wire::checksum`) and the
//! devices here, which complete checksums the kernel left to offload.

/// Adds `data` to a running ones'-complement sum (not yet folded). An odd final byte is padded with zero, as
/// RFC 1071 section 4.1 does.
///
/// The bulk is summed as native-endian 32-bit words into a 64-bit accumulator and byte-swapped once at the
/// end: RFC 1071 section 2(B) ("byte order independence") makes that equal to summing big-endian 16-bit
/// words, and section 2(C) ("parallel summation") lets the carries wait in the upper half until the fold.
/// Unlike an add-with-carry chain, each addition is independent of the last one's carry, so the compiler
/// turns the loop into vector adds (overflow would take 16 GiB of data; a frame is at most 64 KiB).
pub fn add(sum: u64, data: &[u8]) -> u64 {
    if data.len() < SHORT {
        return add_short(sum, data);
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: `add_avx2` needs only AVX2, which the CPU was just seen to have.
        return unsafe { x86::add_avx2(sum, data) };
    }
    add_portable(sum, data)
}

/// The same loop compiled for AVX2 and chosen at run time. x86-64's baseline is SSE2, on which a 1448-byte
/// payload takes 29 ns to sum; with AVX2's 32-byte vectors, 16 ns (measured on the benchmark machine; the
/// in-memory bulk benchmark went from 42-43.5 to 46-48 Gbit/s). The standard library caches the test of
/// the CPU's features: one load per call.
#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx2")]
    pub(super) fn add_avx2(sum: u64, data: &[u8]) -> u64 {
        super::add_portable(sum, data)
    }
}

/// Below this length (an IPv4 header, a pure ACK, a small request) the vector loop's set-up and final
/// reduction cost more than they save: such data is summed word by word.
const SHORT: usize = 128;

/// [`add`] for short data: native-endian 64-bit words into one accumulator, counting the carries out of it.
/// A carry out of bit 63 is worth 2^64, which is 1 modulo 0xffff like every power of 2^16, so the carries
/// are added back at the end (the end-around carry of RFC 1071 section 2(C), deferred).
#[inline(always)]
fn add_short(sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let (mut acc, mut carries) = (0u64, 0u64);
    for w in &mut words {
        let (next, carried) = acc.overflowing_add(u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
        acc = next;
        carries += u64::from(carried);
    }
    // Down to 34 bits, which the 32-bit words of the rest cannot overflow.
    let acc = (acc & 0xffff_ffff) + (acc >> 32) + carries;
    finish_words(sum, acc, words.remainder())
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
    finish(sum, &lanes, blocks.remainder())
}

/// Adds one 32-byte block to eight native-endian 32-bit lanes.
#[inline(always)]
fn add_block(lanes: &mut [u64; 8], block: &[u8]) {
    for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
        *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
}

/// Adds the lanes and the bytes after the last whole block (`rest`, under 32 bytes) to `sum`.
fn finish(sum: u64, lanes: &[u64; 8], rest: &[u8]) -> u64 {
    finish_words(sum, lanes.iter().sum::<u64>(), rest)
}

/// Adds `acc` (a native-endian sum of 32-bit words) and the bytes of `rest` to `sum`.
#[inline(always)]
fn finish_words(sum: u64, acc: u64, rest: &[u8]) -> u64 {
    let mut words = rest.chunks_exact(4);
    let tail: u64 = (&mut words).map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]))).sum();
    let acc = acc + tail;
    // Fold the native sum to 16 bits, keeping end-around carries, then read it as big-endian.
    let mut folded = (acc & 0xffff_ffff) + (acc >> 32);
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    let mut sum = sum + u64::from(u16::from_be(folded as u16));
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        sum += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
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
            }
        }
    }
}
