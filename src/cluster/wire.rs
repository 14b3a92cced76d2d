//! Heartbeat datagram encoding, HMAC-SHA256 authentication and replay protection.
