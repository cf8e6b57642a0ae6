//! Views over link-layer headers that `etherparse` does not cover the way natrec needs
//! (SLL2, PPPoE, stacked VLAN tags of any TPID), in the style of smoltcp's `wire` module:
//! a view wraps a buffer, `new_checked` verifies the length once, and after that no accessor
//! can panic. All fields are big-endian.

use std::ops::{Range, RangeFrom};

use super::Skip;

/// A field's byte range within its header.
type Field = Range<usize>;
/// The bytes after a header.
type Rest = RangeFrom<usize>;

fn be16(b: &[u8], f: Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

fn be32(b: &[u8], f: Field) -> u32 {
    u32::from_be_bytes([b[f.start], b[f.start + 1], b[f.start + 2], b[f.start + 3]])
}

/// Checks that `buffer` holds at least `len` bytes.
fn check_len(buffer: &[u8], len: usize, layer: &'static str) -> Result<(), Skip> {
    if buffer.len() < len {
        Err(Skip::Truncated { layer })
    } else {
        Ok(())
    }
}

/// Ethernet II header: destination, source, EtherType.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

mod eth {
    use super::{Field, Rest};
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: Rest = 14..;
    pub const HEADER_LEN: usize = 14;
}

impl<'a> EthernetFrame<&'a [u8]> {
    /// Wraps `buffer` after checking it holds the 14-byte header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Skip> {
        check_len(buffer, eth::HEADER_LEN, "ethernet")?;
        Ok(EthernetFrame { buffer })
    }

    /// EtherType (or 802.3 length).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer, eth::ETHERTYPE)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[eth::PAYLOAD]
    }
}

/// One 802.1Q / 802.1ad tag as it follows its TPID: TCI, then the next EtherType.
#[derive(Clone, Copy, Debug)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

mod vlan {
    use super::{Field, Rest};
    pub const TCI: Field = 0..2;
    pub const ETHERTYPE: Field = 2..4;
    pub const PAYLOAD: Rest = 4..;
    pub const HEADER_LEN: usize = 4;
    pub const VID_MASK: u16 = 0x0fff;
}

impl<'a> VlanTag<&'a [u8]> {
    /// Wraps `buffer` after checking it holds the 4-byte tag.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Skip> {
        check_len(buffer, vlan::HEADER_LEN, "vlan")?;
        Ok(VlanTag { buffer })
    }

    /// VLAN id (low 12 bits of the TCI).
    pub fn vlan_id(&self) -> u16 {
        be16(self.buffer, vlan::TCI) & vlan::VID_MASK
    }

    /// EtherType of what follows the tag.
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer, vlan::ETHERTYPE)
    }

    /// The bytes after the tag.
    pub fn into_payload(self) -> &'a [u8] {
        &self.buffer[vlan::PAYLOAD]
    }
}

/// PPPoE session header (RFC 2516): version/type, code, session id, length; the payload (which
/// starts with the PPP protocol field) is `length` bytes long.
#[derive(Clone, Copy, Debug)]
pub struct PppoeSession<T: AsRef<[u8]>> {
    buffer: T,
}

mod pppoe {
    use super::Field;
    pub const VER_TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const SESSION_ID: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const HEADER_LEN: usize = 6;
    /// Version 1, type 1.
    pub const VER_TYPE_1_1: u8 = 0x11;
    /// Session data carries code 0.
    pub const CODE_SESSION_DATA: u8 = 0;
}

impl<'a> PppoeSession<&'a [u8]> {
    /// Wraps `buffer` after checking it holds the 6-byte header, version/type 1/1 and code 0.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Skip> {
        check_len(buffer, pppoe::HEADER_LEN, "pppoe")?;
        if buffer[pppoe::VER_TYPE] != pppoe::VER_TYPE_1_1 {
            return Err(Skip::Malformed {
                layer: "pppoe",
                detail: "version/type is not 1/1",
            });
        }
        if buffer[pppoe::CODE] != pppoe::CODE_SESSION_DATA {
            return Err(Skip::Malformed {
                layer: "pppoe",
                detail: "session frame with a non-zero code",
            });
        }
        Ok(PppoeSession { buffer })
    }

    /// Session id.
    pub fn session_id(&self) -> u16 {
        be16(self.buffer, pppoe::SESSION_ID)
    }

    /// Payload length announced by the header, in bytes.
    pub fn length(&self) -> u16 {
        be16(self.buffer, pppoe::LENGTH)
    }

    /// The payload: `length` bytes after the header, or fewer if the capture was cut (Ethernet
    /// padding beyond `length` is dropped).
    pub fn into_payload(self) -> &'a [u8] {
        let rest = &self.buffer[pppoe::HEADER_LEN..];
        let len = usize::from(self.length()).min(rest.len());
        &rest[..len]
    }
}

/// Linux cooked capture v1 header (16 bytes): packet type, ARPHRD type, link-layer address
/// length, 8 bytes of address, protocol.
#[derive(Clone, Copy, Debug)]
pub struct LinuxSll<T: AsRef<[u8]>> {
    buffer: T,
}

mod sll {
    use super::{Field, Rest};
    pub const PKTTYPE: Field = 0..2;
    pub const HATYPE: Field = 2..4;
    pub const PROTOCOL: Field = 14..16;
    pub const PAYLOAD: Rest = 16..;
    pub const HEADER_LEN: usize = 16;
}

impl<'a> LinuxSll<&'a [u8]> {
    /// Wraps `buffer` after checking it holds the 16-byte header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Skip> {
        check_len(buffer, sll::HEADER_LEN, "linux-sll")?;
        Ok(LinuxSll { buffer })
    }

    /// Packet type (0 to us, 1 broadcast, 2 multicast, 3 to another host, 4 sent by us).
    pub fn pkttype(&self) -> u16 {
        be16(self.buffer, sll::PKTTYPE)
    }

    /// ARPHRD_* hardware type.
    pub fn hatype(&self) -> u16 {
        be16(self.buffer, sll::HATYPE)
    }

    /// Protocol: an EtherType for the link types natrec sees.
    pub fn protocol(&self) -> u16 {
        be16(self.buffer, sll::PROTOCOL)
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[sll::PAYLOAD]
    }
}

/// Linux cooked capture v2 header (20 bytes): protocol, reserved, interface index, ARPHRD type,
/// packet type, address length, 8 bytes of address.
#[derive(Clone, Copy, Debug)]
pub struct LinuxSll2<T: AsRef<[u8]>> {
    buffer: T,
}

mod sll2 {
    use super::{Field, Rest};
    pub const PROTOCOL: Field = 0..2;
    pub const IFINDEX: Field = 4..8;
    pub const HATYPE: Field = 8..10;
    pub const PKTTYPE: usize = 10;
    pub const PAYLOAD: Rest = 20..;
    pub const HEADER_LEN: usize = 20;
}

impl<'a> LinuxSll2<&'a [u8]> {
    /// Wraps `buffer` after checking it holds the 20-byte header.
    pub fn new_checked(buffer: &'a [u8]) -> Result<Self, Skip> {
        check_len(buffer, sll2::HEADER_LEN, "linux-sll2")?;
        Ok(LinuxSll2 { buffer })
    }

    /// Protocol: an EtherType for the link types natrec sees.
    pub fn protocol(&self) -> u16 {
        be16(self.buffer, sll2::PROTOCOL)
    }

    /// Linux interface index.
    pub fn ifindex(&self) -> u32 {
        be32(self.buffer, sll2::IFINDEX)
    }

    /// ARPHRD_* hardware type.
    pub fn hatype(&self) -> u16 {
        be16(self.buffer, sll2::HATYPE)
    }

    /// Packet type (0 to us, 1 broadcast, 2 multicast, 3 to another host, 4 sent by us).
    pub fn pkttype(&self) -> u8 {
        self.buffer[sll2::PKTTYPE]
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer[sll2::PAYLOAD]
    }
}
