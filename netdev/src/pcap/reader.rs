//! Reading classic pcap and pcapng captures into memory.
//!
//! Captures come from outside the project (fixtures, bug reports, other tools), so every length is checked
//! against the bytes actually present: a malformed file gives a [`PcapError`], a packet whose recorded length
//! overruns the data is cut to what is there, and nothing allocates more than the input's size.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::LinkType;

/// A capture read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureFile {
    /// The file's link type: the classic header's, or that of the first pcapng interface (`Other(0)` when a
    /// pcapng file describes no interface). Each packet carries its own, which is what to use.
    pub link_type: LinkType,
    /// The packets in file order.
    pub packets: Vec<Packet>,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture time (usually since the UNIX epoch); zero for pcapng Simple Packet Blocks, which have none.
    pub ts: Duration,
    /// The captured bytes (possibly fewer than `orig_len`, when the capture's snaplen cut the packet).
    pub data: Vec<u8>,
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// The link type of this packet's interface (pcapng files may mix link types).
    pub link_type: LinkType,
}

/// Why a capture could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PcapError {
    /// The input does not start with a pcap or pcapng magic number.
    BadMagic(u32),
    /// The input ends inside a file header or a pcapng block header.
    Truncated {
        /// Byte offset of the header that is cut short.
        offset: usize,
    },
    /// A pcapng block length that is below the minimum, not a multiple of 4, or past the end of the input.
    BadBlockLength {
        /// Byte offset of the block.
        offset: usize,
        /// The length the block claims.
        length: u32,
    },
    /// A pcapng Section Header Block whose byte-order magic is neither order of 0x1A2B3C4D.
    BadByteOrder {
        /// Byte offset of the block.
        offset: usize,
    },
    /// A pcapng packet block that names an interface no Interface Description Block described.
    UnknownInterface {
        /// Byte offset of the block.
        offset: usize,
        /// The interface id it names.
        interface: u32,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::BadMagic(m) => {
                write!(f, "not a pcap or pcapng capture (magic number {m:#010x})")
            }
            PcapError::Truncated { offset } => {
                write!(f, "capture cut short in the header at byte {offset}")
            }
            PcapError::BadBlockLength { offset, length } => {
                write!(f, "pcapng block at byte {offset} has an invalid length {length}")
            }
            PcapError::BadByteOrder { offset } => {
                write!(f, "pcapng section header at byte {offset} has an invalid byte-order magic")
            }
            PcapError::UnknownInterface { offset, interface } => {
                write!(f, "pcapng packet block at byte {offset} names undescribed interface {interface}")
            }
        }
    }
}

impl std::error::Error for PcapError {}

impl From<PcapError> for io::Error {
    fn from(e: PcapError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Reads the capture at `path` (pcap or pcapng).
pub fn read_file(path: impl AsRef<Path>) -> io::Result<CaptureFile> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read capture {}: {e}", path.display())))?;
    parse(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

/// Parses a whole capture held in memory: classic pcap (either byte order, microsecond or nanosecond
/// timestamps) or pcapng.
///
/// A classic capture cut short (for example one still being written) reads up to its last complete record
/// header, and its last packet keeps the bytes that are there.
pub fn parse(bytes: &[u8]) -> Result<CaptureFile, PcapError> {
    let magic_bytes: [u8; 4] =
        bytes.get(..4).and_then(|b| b.try_into().ok()).ok_or(PcapError::Truncated { offset: 0 })?;
    let magic = u32::from_le_bytes(magic_bytes);
    match magic {
        0xa1b2_c3d4 => parse_classic(bytes, Endian::Little, false),
        0xa1b2_3c4d => parse_classic(bytes, Endian::Little, true),
        0xd4c3_b2a1 => parse_classic(bytes, Endian::Big, false),
        0x4d3c_b2a1 => parse_classic(bytes, Endian::Big, true),
        BLOCK_SHB => parse_pcapng(bytes),
        other => Err(PcapError::BadMagic(other)),
    }
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, bytes: &[u8], at: usize) -> Option<u16> {
        let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(b),
            Endian::Big => u16::from_be_bytes(b),
        })
    }

    fn u32(self, bytes: &[u8], at: usize) -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        })
    }

    fn i64(self, bytes: &[u8], at: usize) -> Option<i64> {
        let b: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(match self {
            Endian::Little => i64::from_le_bytes(b),
            Endian::Big => i64::from_be_bytes(b),
        })
    }
}

/// Up to `len` bytes from `at`, cut to what the input has.
fn take(bytes: &[u8], at: usize, len: u32) -> &[u8] {
    let rest = bytes.get(at..).unwrap_or(&[]);
    &rest[..rest.len().min(len as usize)]
}

fn parse_classic(bytes: &[u8], e: Endian, nanos: bool) -> Result<CaptureFile, PcapError> {
    // The low 16 bits are the link type; the high bits may carry FCS information.
    let network = e.u32(bytes, 20).ok_or(PcapError::Truncated { offset: 0 })?;
    let link_type = LinkType::from_u32(network & 0xffff);
    let mut packets = Vec::new();
    let mut pos = 24usize;
    while let (Some(secs), Some(frac), Some(cap_len), Some(orig_len)) =
        (e.u32(bytes, pos), e.u32(bytes, pos + 4), e.u32(bytes, pos + 8), e.u32(bytes, pos + 12))
    {
        pos += 16;
        let data = take(bytes, pos, cap_len);
        pos += data.len();
        let frac_nanos = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        let ts = Duration::from_secs(u64::from(secs)).saturating_add(Duration::from_nanos(frac_nanos));
        packets.push(Packet { ts, data: data.to_vec(), orig_len, link_type });
    }
    Ok(CaptureFile { link_type, packets })
}

const BLOCK_SHB: u32 = 0x0a0d_0d0a;
const BLOCK_IDB: u32 = 1;
const BLOCK_OPB: u32 = 2;
const BLOCK_SPB: u32 = 3;
const BLOCK_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Timestamp units of a pcapng interface (`if_tsresol`).
#[derive(Debug, Clone, Copy)]
enum Resolution {
    /// Units of 10^-n seconds.
    Pow10(u8),
    /// Units of 2^-n seconds.
    Pow2(u8),
}

impl Resolution {
    fn to_duration(self, units: u64) -> Duration {
        const NANOS: u128 = 1_000_000_000;
        let units = u128::from(units);
        let nanos = match self {
            Resolution::Pow10(n) if n <= 9 => units * 10u128.pow(u32::from(9 - n)),
            Resolution::Pow10(n) => match 10u128.checked_pow(u32::from(n - 9)) {
                Some(div) => units / div,
                None => 0,
            },
            // units < 2^64 and NANOS < 2^30, so the product fits; n <= 127 keeps the shift in range.
            Resolution::Pow2(n) => (units * NANOS) >> n.min(127),
        };
        let secs = u64::try_from(nanos / NANOS).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % NANOS) as u32)
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: LinkType,
    snap_len: u32,
    resolution: Resolution,
    /// `if_tsoffset`: seconds to add to every timestamp.
    offset_secs: i64,
}

impl Interface {
    fn timestamp(&self, high: u32, low: u32) -> Duration {
        let ts = self.resolution.to_duration((u64::from(high) << 32) | u64::from(low));
        let offset = Duration::from_secs(self.offset_secs.unsigned_abs());
        if self.offset_secs >= 0 {
            ts.saturating_add(offset)
        } else {
            ts.saturating_sub(offset)
        }
    }
}

/// Reads an Interface Description Block body: link type, snaplen, and the timestamp options.
fn parse_idb(body: &[u8], e: Endian) -> Option<Interface> {
    let link = e.u16(body, 0)?;
    let snap_len = e.u32(body, 4)?;
    let mut iface = Interface {
        link_type: LinkType::from_u32(u32::from(link)),
        snap_len,
        resolution: Resolution::Pow10(6),
        offset_secs: 0,
    };
    let mut pos = 8usize;
    // Options: code, length, value padded to 4 bytes. A malformed option list just ends the options.
    while let (Some(code), Some(len)) = (e.u16(body, pos), e.u16(body, pos + 2)) {
        let value = match body.get(pos + 4..pos + 4 + usize::from(len)) {
            Some(v) => v,
            None => break,
        };
        match (code, value) {
            (0, _) => break,
            (9, [r, ..]) => {
                iface.resolution = if r & 0x80 == 0 { Resolution::Pow10(*r) } else { Resolution::Pow2(r & 0x7f) };
            }
            (14, _) => iface.offset_secs = e.i64(value, 0).unwrap_or(0),
            _ => {}
        }
        pos += 4 + usize::from(len).next_multiple_of(4);
    }
    Some(iface)
}

fn parse_pcapng(bytes: &[u8]) -> Result<CaptureFile, PcapError> {
    let mut e = Endian::Little;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut first_link: Option<LinkType> = None;
    let mut packets = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let truncated = PcapError::Truncated { offset: pos };
        if bytes.len() - pos < 12 {
            return Err(truncated);
        }
        // The SHB's type reads the same in both byte orders; its byte-order magic fixes the order of the
        // section it opens.
        if Endian::Little.u32(bytes, pos) == Some(BLOCK_SHB) {
            e = match Endian::Little.u32(bytes, pos + 8) {
                Some(BYTE_ORDER_MAGIC) => Endian::Little,
                Some(m) if m.swap_bytes() == BYTE_ORDER_MAGIC => Endian::Big,
                _ => return Err(PcapError::BadByteOrder { offset: pos }),
            };
            interfaces.clear();
        }
        let block_type = e.u32(bytes, pos).ok_or(truncated.clone())?;
        let length = e.u32(bytes, pos + 4).ok_or(truncated)?;
        let total = length as usize;
        let min = if block_type == BLOCK_SHB { 28 } else { 12 };
        if total < min || length % 4 != 0 || total > bytes.len() - pos {
            return Err(PcapError::BadBlockLength { offset: pos, length });
        }
        let body = &bytes[pos + 8..pos + total - 4];
        let bad_length = PcapError::BadBlockLength { offset: pos, length };
        let interface = |id: u32| {
            interfaces.get(id as usize).copied().ok_or(PcapError::UnknownInterface { offset: pos, interface: id })
        };
        match block_type {
            BLOCK_IDB => {
                let iface = parse_idb(body, e).ok_or(bad_length)?;
                first_link.get_or_insert(iface.link_type);
                interfaces.push(iface);
            }
            BLOCK_EPB | BLOCK_OPB => {
                // EPB: interface u32; OPB: interface u16 and drop count u16. Then both have timestamp (high,
                // low), captured length and original length.
                let id = if block_type == BLOCK_EPB { e.u32(body, 0) } else { e.u16(body, 0).map(u32::from) };
                let (Some(id), Some(high), Some(low), Some(cap_len), Some(orig_len)) =
                    (id, e.u32(body, 4), e.u32(body, 8), e.u32(body, 12), e.u32(body, 16))
                else {
                    return Err(bad_length);
                };
                let iface = interface(id)?;
                packets.push(Packet {
                    ts: iface.timestamp(high, low),
                    data: take(body, 20, cap_len).to_vec(),
                    orig_len,
                    link_type: iface.link_type,
                });
            }
            BLOCK_SPB => {
                let orig_len = e.u32(body, 0).ok_or(bad_length)?;
                let iface = interface(0)?;
                let cap_len = if iface.snap_len == 0 { orig_len } else { orig_len.min(iface.snap_len) };
                packets.push(Packet {
                    ts: Duration::ZERO,
                    data: take(body, 4, cap_len).to_vec(),
                    orig_len,
                    link_type: iface.link_type,
                });
            }
            _ => {} // Section headers were handled above; statistics, name resolution and the rest are skipped.
        }
        pos += total;
    }
    Ok(CaptureFile { link_type: first_link.unwrap_or(LinkType::Other(0)), packets })
}

/// Destination MAC of synthesized Ethernet headers.
const SYNTH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Source MAC of synthesized Ethernet headers when the capture has none.
const SYNTH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

impl Packet {
    /// The packet as an Ethernet II frame, for replaying captures of any supported link type through a
    /// device. Ethernet packets are returned as they are; raw IP gets a synthesized header
    /// (02:00:00:00:00:01 → 02:00:00:00:00:02); Linux SLL/SLL2 get a header built from their protocol field,
    /// with their link-layer source address as source MAC when it is 6 bytes long. `None` for other link types,
    /// for non-IP raw packets, for SLL protocols that are not EtherTypes, and for packets too short to hold
    /// their own header.
    pub fn ethernet_frame(&self) -> Option<Vec<u8>> {
        let d = &self.data;
        match self.link_type {
            LinkType::Ethernet => (d.len() >= 14).then(|| d.clone()),
            LinkType::Raw => {
                let ether_type = match d.first()? >> 4 {
                    4 => 0x0800,
                    6 => 0x86dd,
                    _ => return None,
                };
                Some(synthesize(SYNTH_SRC, ether_type, d))
            }
            LinkType::LinuxSll => {
                // packet type, ARPHRD, address length, 8 address bytes, protocol.
                let header = d.get(..16)?;
                let addr_len = u16::from_be_bytes([header[4], header[5]]);
                let protocol = u16::from_be_bytes([header[14], header[15]]);
                Some(synthesize(source_mac(addr_len, &header[6..14]), ether_type(protocol)?, &d[16..]))
            }
            LinkType::LinuxSll2 => {
                // protocol, reserved, interface index, ARPHRD, packet type, address length, 8 address bytes.
                let header = d.get(..20)?;
                let protocol = u16::from_be_bytes([header[0], header[1]]);
                let addr_len = u16::from(header[11]);
                Some(synthesize(source_mac(addr_len, &header[12..20]), ether_type(protocol)?, &d[20..]))
            }
            LinkType::Other(_) => None,
        }
    }
}

/// SLL protocol values below 0x0600 are Linux pseudo-protocols (802.3, 802.2 LLC, ...), not EtherTypes.
fn ether_type(protocol: u16) -> Option<u16> {
    (protocol >= 0x0600).then_some(protocol)
}

fn source_mac(addr_len: u16, addr: &[u8]) -> [u8; 6] {
    match (addr_len, addr.get(..6)) {
        (6, Some(mac)) => mac.try_into().unwrap_or(SYNTH_SRC),
        _ => SYNTH_SRC,
    }
}

fn synthesize(src: [u8; 6], ether_type: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + payload.len());
    frame.extend_from_slice(&SYNTH_DST);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ether_type.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}
