//! Initial sequence numbers (RFC 6528 section 3).
//!
//! An initial sequence number must be hard to guess, or an off-path attacker can inject data into or reset a
//! connection it cannot see (RFC 6528 section 1). It must also move forward with time for each connection
//! identifier, so that segments of an old incarnation of a connection fall outside the window of a new one
//! (RFC 9293 section 3.4.1). RFC 6528 gets both with
//!
//! ```text
//! ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
//! ```
//!
//! where M is a clock ticking every 4 microseconds and F a keyed pseudorandom function. Each 4-tuple gets its
//! own secret offset, and all of them advance at the clock's rate.
//!
//! F here is SipHash-2-4, as in Linux (`secure_tcp_seq`). The key is handed in by the driver, because the core
//! never reads a clock or an entropy source; RFC 6528 section 3 asks for a key of at least 128 bits, chosen at
//! random and changed on reboot.

use super::SeqNum;
use crate::time::Instant;
use core::fmt;
use std::net::SocketAddrV4;

/// Nanoseconds per tick of M: "a timer that is incremented every 4 microseconds" (RFC 6528 section 3).
const TICK_NANOS: u64 = 4_000;

/// Computes initial sequence numbers for new connections (RFC 6528 section 3).
#[derive(Clone)]
pub struct IsnGenerator {
    key: [u8; 16],
}

impl IsnGenerator {
    /// A generator keyed by `key`, which must be secret and random (RFC 6528 section 3: "at least 128 bits").
    pub fn new(key: [u8; 16]) -> Self {
        IsnGenerator { key }
    }

    /// The ISN for a connection from `local` to `remote` opened at `now`.
    ///
    /// M is `now` in 4-microsecond ticks, truncated to 32 bits: a clock that wraps about every 4.77 hours, as
    /// the one RFC 9293 section 3.4.1 describes. F is the low 32 bits of SipHash-2-4 over the connection
    /// identifier in network byte order: local address, local port, remote address, remote port.
    pub fn isn(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNum {
        let mut id = [0u8; 12];
        id[0..4].copy_from_slice(&local.ip().octets());
        id[4..6].copy_from_slice(&local.port().to_be_bytes());
        id[6..10].copy_from_slice(&remote.ip().octets());
        id[10..12].copy_from_slice(&remote.port().to_be_bytes());
        let f = siphash24(&self.key, &id) as u32;
        let m = (now.as_nanos() / TICK_NANOS) as u32;
        SeqNum(m.wrapping_add(f))
    }
}

impl fmt::Debug for IsnGenerator {
    /// Leaves the key out: it is the one secret the ISNs rest on, and logs are not secret.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("IsnGenerator { .. }")
    }
}

/// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): a keyed 64-bit hash, strong
/// enough that outputs cannot be predicted without the key. Besides ISNs it suits any table keyed by values an
/// attacker chooses, such as connection lookups.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = le64(&key[..8]);
    let k1 = le64(&key[8..]);
    // Initialization: the key XORed with the ASCII of "somepseudorandomlygeneratedbytes" (section 2).
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    // Compression: each 8-byte little-endian word m goes through c = 2 rounds between v3 ^= m and v0 ^= m.
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        compress(&mut v, le64(word));
    }
    // The last word holds the remaining 0 to 7 bytes and, in its top byte, the message length mod 256.
    compress(&mut v, le64(words.remainder()) | (data.len() as u64) << 56);
    // Finalization: v2 ^= 0xff, then d = 4 rounds.
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Absorbs one message word with SipHash's c = 2 rounds.
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sip_round(v);
    sip_round(v);
    v[0] ^= m;
}

/// One SipRound (section 2 of the paper): additions, rotations and XORs on the four state words.
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// Reads up to 8 bytes as a little-endian word, the missing high bytes zero.
fn le64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const REFERENCE_KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// The message 00 01 02 .. of length `n`, as in the paper's test vectors.
    fn message(n: usize) -> Vec<u8> {
        (0..n as u8).collect()
    }

    #[test]
    fn siphash_reference_vectors() {
        // Appendix A of the paper: key 00..0f, message 00..0e -> a129ca6149be45e5.
        assert_eq!(siphash24(&REFERENCE_KEY, &message(15)), 0xa129_ca61_49be_45e5);
        // Further entries of the reference implementation's vectors.h, read as little-endian words: the empty
        // message, a partial word, and exactly one word.
        assert_eq!(siphash24(&REFERENCE_KEY, &message(0)), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(&REFERENCE_KEY, &message(1)), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(&REFERENCE_KEY, &message(7)), 0xab02_00f5_8b01_d137);
        assert_eq!(siphash24(&REFERENCE_KEY, &message(8)), 0x93f5_f579_9a93_2462);
    }

    #[test]
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4; deprecated for HashMap use, fine as a cross-check.
    fn siphash_matches_std_for_all_lengths_to_64() {
        use std::hash::{Hasher, SipHasher};
        let key = [0x5a, 1, 0xff, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x80];
        for n in 0..=64 {
            let data: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
            let mut std = SipHasher::new_with_keys(le64(&key[..8]), le64(&key[8..]));
            std.write(&data);
            assert_eq!(siphash24(&key, &data), std.finish(), "length {n}");
        }
    }

    fn addr(a: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, a), port)
    }

    #[test]
    fn each_four_tuple_gets_its_own_offset() {
        let g = IsnGenerator::new([7; 16]);
        let t = Instant::from_secs(10);
        let base = (addr(1, 40000), addr(2, 80));
        let others = [
            (addr(3, 40000), addr(2, 80)),
            (addr(1, 40001), addr(2, 80)),
            (addr(1, 40000), addr(3, 80)),
            (addr(1, 40000), addr(2, 81)),
            (addr(2, 80), addr(1, 40000)), // the same connection seen from the other end
        ];
        let mut seen = vec![g.isn(t, base.0, base.1)];
        for (local, remote) in others {
            let isn = g.isn(t, local, remote);
            assert!(!seen.contains(&isn), "{local} -> {remote}");
            seen.push(isn);
        }
    }

    #[test]
    fn the_clock_adds_250000_per_second() {
        let g = IsnGenerator::new([7; 16]);
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let t0 = Instant::from_millis(1234);
        let a = g.isn(t0, local, remote);
        assert_eq!(g.isn(t0 + crate::time::Duration::from_secs(1), local, remote).distance(a), 250_000);
        assert_eq!(g.isn(t0 + crate::time::Duration::from_micros(4), local, remote).distance(a), 1);
        assert_eq!(g.isn(t0 + crate::time::Duration::from_nanos(3999), local, remote), a);
        // M wraps after 2^32 ticks, and so the ISN with it.
        let wrap = crate::time::Duration::from_nanos(TICK_NANOS << 32);
        assert_eq!(g.isn(t0 + wrap, local, remote), a);
    }

    #[test]
    fn deterministic_for_a_key() {
        let (local, remote) = (addr(1, 40000), addr(2, 80));
        let t = Instant::from_secs(3);
        let isn = IsnGenerator::new([1; 16]).isn(t, local, remote);
        assert_eq!(IsnGenerator::new([1; 16]).isn(t, local, remote), isn);
        assert_ne!(IsnGenerator::new([2; 16]).isn(t, local, remote), isn);
        assert_eq!(format!("{:?}", IsnGenerator::new([1; 16])), "IsnGenerator { .. }");
    }
}
