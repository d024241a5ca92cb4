//! What the transport knows about the other end of a connection, handed to the API as a
//! request extension.
//!
//! The TLS layer in `baton serve` inserts a [`PeerCertificate`] into every request that
//! arrived on a connection whose client presented a certificate the server verified; the
//! authorization layer maps its subject to a policy. Plain HTTP requests carry none.

/// A verified client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The certificate's subject, as an RFC 4514 string (`CN=worker-1,O=fleet`).
    pub subject: String,
}
