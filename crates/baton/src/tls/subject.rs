//! The subject of an X.509 certificate as an RFC 4514 string (`CN=worker-1,O=fleet`).
//!
//! Only the path from the certificate to its subject name is decoded: a certificate that
//! reaches this module was already verified by rustls against the configured client CA, so
//! a full X.509 parser would only add weight. Anything unexpected yields `None`, never a panic.

use std::fmt::Write;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
/// `[0] EXPLICIT Version` at the start of a `TBSCertificate`.
const VERSION: u8 = 0xa0;

/// The subject of a DER certificate, RDNs in RFC 4514 order (the last one first).
pub fn subject(cert_der: &[u8]) -> Option<String> {
    let (cert, _) = expect(cert_der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;

    // TBSCertificate: [0] version, serialNumber, signature, issuer, validity, subject, ...
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == VERSION {
        rest = expect(rest, INTEGER)?.1;
    } else if tag != INTEGER {
        return None;
    }
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (name, _) = expect(rest, SEQUENCE)?;
    format_name(name)
}

/// Formats the contents of a `Name` (a sequence of RDNs).
fn format_name(mut name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (mut set, rest) = expect(name, SET)?;
        name = rest;
        let mut attributes = Vec::new();
        while !set.is_empty() {
            let (attribute, rest) = expect(set, SEQUENCE)?;
            set = rest;
            attributes.push(format_attribute(attribute)?);
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// Formats an `AttributeTypeAndValue` as `TYPE=value`.
fn format_attribute(attribute: &[u8]) -> Option<String> {
    let (oid, value_tlv) = expect(attribute, OID)?;
    let (tag, value, rest) = tlv(value_tlv)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = attribute_type(oid)?;
    out.push('=');
    match decode_string(tag, value) {
        Some(text) => escape_into(&text, &mut out),
        // RFC 4514 §2.4: a value that is not a string is written as `#` and its hex DER.
        None => {
            out.push('#');
            for byte in value_tlv {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
    Some(out)
}

/// The RFC 4514 short name of an attribute type, or its dotted OID.
fn attribute_type(oid: &[u8]) -> Option<String> {
    let dotted = dotted_oid(oid)?;
    let short = match dotted.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        _ => return Some(dotted),
    };
    Some(short.to_owned())
}

fn dotted_oid(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    for (i, byte) in oid.iter().enumerate() {
        arc = arc.checked_mul(128)?.checked_add(u64::from(byte & 0x7f))?;
        if byte & 0x80 == 0 {
            arcs.push(arc);
            arc = 0;
        } else if i + 1 == oid.len() {
            return None;
        }
    }
    let first = *arcs.first()?;
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut text = format!("{a}.{b}");
    for arc in &arcs[1..] {
        let _ = write!(text, ".{arc}");
    }
    Some(text)
}

/// Decodes the ASN.1 string types a certificate name uses; `None` for anything else.
fn decode_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        0x0c | 0x12 | 0x13 | 0x16 | 0x1a => String::from_utf8(value.to_vec()).ok(),
        // TeletexString: in practice Latin-1
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE
        0x1e if value.len() % 2 == 0 => {
            let units = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        // UniversalString: UTF-32BE
        0x1c if value.len() % 4 == 0 => value
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

/// Appends `text` escaped as RFC 4514 §2.4 asks.
fn escape_into(text: &str, out: &mut String) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
}

/// Reads one DER element of the given tag: its contents and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = tlv(input)?;
    (found == tag).then_some((contents, rest))
}

/// Reads one DER element (single-byte tags only, definite lengths of up to four bytes).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, input) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut input) = input.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || input.len() < count {
            return None;
        }
        let (bytes, rest) = input.split_at(count);
        input = rest;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if input.len() < len {
        return None;
    }
    let (contents, rest) = input.split_at(len);
    Some((tag, contents, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert_with(dn: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["worker.test".to_owned()]).unwrap();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn subject_is_written_last_rdn_first() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "fleet");
        dn.push(DnType::CommonName, "worker-1");
        assert_eq!(
            subject(&cert_with(dn)).as_deref(),
            Some("CN=worker-1,O=fleet")
        );
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "DE");
        dn.push(DnType::OrganizationalUnitName, "a,b+c");
        dn.push(DnType::CommonName, " #lead\\ ");
        assert_eq!(
            subject(&cert_with(dn)).as_deref(),
            Some("CN=\\ #lead\\\\\\ ,OU=a\\,b\\+c,C=DE")
        );
    }

    #[test]
    fn unknown_attribute_types_are_dotted_oids() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
            "ops@example.com",
        );
        assert_eq!(
            subject(&cert_with(dn)).as_deref(),
            Some("1.2.840.113549.1.9.1=ops@example.com")
        );
    }

    #[test]
    fn garbage_is_no_subject() {
        assert_eq!(subject(b""), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let cert = cert_with(DistinguishedName::new());
        for len in 0..cert.len() {
            let _ = subject(&cert[..len]);
        }
    }
}
