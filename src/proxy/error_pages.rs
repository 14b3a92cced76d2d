//! Every response edgelb generates itself, byte for byte as HAProxy 2.6 sends them.
//!
//! 400/408 come from HAProxy's H1 mux (capitalised headers, `Connection: close`); 502/503/504 are
//! stream-level errors (lower-case headers, the client connection stays open). None ever carries
//! a persistence cookie.

/// Statuses the proxy can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    BadRequest,
    RequestTimeout,
    MethodNotAllowed,
    PayloadTooLarge,
    NotImplemented,
    BadGateway,
    ServiceUnavailable,
    GatewayTimeout,
}

impl ProxyError {
    pub fn status(self) -> u16 {
        match self {
            ProxyError::BadRequest => 400,
            ProxyError::RequestTimeout => 408,
            ProxyError::MethodNotAllowed => 405,
            ProxyError::PayloadTooLarge => 413,
            ProxyError::NotImplemented => 501,
            ProxyError::BadGateway => 502,
            ProxyError::ServiceUnavailable => 503,
            ProxyError::GatewayTimeout => 504,
        }
    }

    /// Whether the client connection must be closed after this response.
    pub fn closes(self) -> bool {
        !matches!(
            self,
            ProxyError::BadGateway | ProxyError::ServiceUnavailable | ProxyError::GatewayTimeout
        )
    }

    /// The exact bytes on the wire.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            ProxyError::BadRequest => b"HTTP/1.1 400 Bad request\r\nContent-length: 90\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n",
            ProxyError::RequestTimeout => b"HTTP/1.1 408 Request Time-out\r\nContent-length: 110\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n",
            ProxyError::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\nContent-length: 94\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html><body><h1>405 Method Not Allowed</h1>\nA request method is not supported.\n</body></html>\n",
            ProxyError::PayloadTooLarge => b"HTTP/1.1 413 Payload Too Large\r\nContent-length: 106\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html><body><h1>413 Payload Too Large</h1>\nThe request entity exceeds the maximum allowed.\n</body></html>\n",
            ProxyError::NotImplemented => b"HTTP/1.1 501 Not Implemented\r\nContent-length: 136\r\nCache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n<html><body><h1>501 Not Implemented</h1>\n.The server does not support the functionality required to fulfill the request.\n</body></html>\n",
            ProxyError::BadGateway => b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 107\r\ncache-control: no-cache\r\ncontent-type: text/html\r\n\r\n<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n",
            ProxyError::ServiceUnavailable => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 107\r\ncache-control: no-cache\r\ncontent-type: text/html\r\n\r\n<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
            ProxyError::GatewayTimeout => b"HTTP/1.1 504 Gateway Time-out\r\ncontent-length: 92\r\ncache-control: no-cache\r\ncontent-type: text/html\r\n\r\n<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n",
        }
    }

    /// The access log's bytes field for this answer. For 502/503/504 (stream-level answers)
    /// HAProxy 2.6 logs the size of its internal (HTX) copy of the page, whatever the wire
    /// form: start line without spaces and CRLF + 20, each header's name and value without
    /// `: ` and CRLF, 1 for the end of headers, then the body (217 for the 214-byte 503).
    /// The others keep the wire size.
    pub fn log_bytes(self) -> u64 {
        if self.closes() {
            return self.bytes().len() as u64;
        }
        htx_len_of_page(self.bytes())
    }

    /// The same response with `connection: close` added, for 5xx sent on a closing connection.
    pub fn bytes_closing(self) -> std::borrow::Cow<'static, [u8]> {
        if self.closes() {
            return std::borrow::Cow::Borrowed(self.bytes());
        }
        let b = self.bytes();
        let split = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .unwrap_or(0);
        let mut v = Vec::with_capacity(b.len() + 19);
        v.extend_from_slice(&b[..split]);
        v.extend_from_slice(b"connection: close\r\n");
        v.extend_from_slice(&b[split..]);
        std::borrow::Cow::Owned(v)
    }
}

/// HTX size of a complete, well-formed page (`name: value` headers, no OWS, no folding).
fn htx_len_of_page(b: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut first = true;
    let mut rest = b;
    while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
        let line = &rest[..p];
        rest = &rest[p + 2..];
        if line.is_empty() {
            // End of headers, then the body.
            return total + 1 + rest.len() as u64;
        }
        total += if first {
            // `HTTP/1.1 503 Reason`: version, status and reason, plus HAProxy's 20.
            line.len() as u64 - 2 + 20
        } else {
            line.len() as u64 - 2
        };
        first = false;
    }
    total
}

/// HAProxy 2.6's answer to `redirect scheme https`: a 302 to `https://<host><path>` (the Host
/// header as sent, port included; empty when there is none, as HAProxy does), written into
/// `out`. `connection` is the header HAProxy adds: `close` when the connection ends (HTTP/1.0
/// without keep-alive, or a request body that is not read), `keep-alive` for an HTTP/1.0
/// keep-alive client. Returns the log's bytes field (HTX size: start line + 20, names and
/// values, 1 for the end of headers; the connection header is not counted).
pub fn redirect_https(
    out: &mut Vec<u8>,
    host: &[u8],
    path: &[u8],
    connection: Option<&[u8]>,
) -> u64 {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\nlocation: https://");
    out.extend_from_slice(host);
    out.extend_from_slice(path);
    out.extend_from_slice(b"\r\ncache-control: no-cache\r\n");
    if let Some(c) = connection {
        out.extend_from_slice(b"connection: ");
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let location = 8 + host.len() + path.len();
    (20 + 16) + (14 + 1) + (8 + location as u64) + (13 + 8) + 1
}

#[cfg(test)]
mod tests {
    use super::ProxyError::*;

    #[test]
    fn log_bytes_are_haproxys_htx_sizes() {
        // Measured on HAProxy 2.6.12: its 502 is logged as 209, its 503 as 217.
        assert_eq!(BadGateway.log_bytes(), 209);
        assert_eq!(ServiceUnavailable.log_bytes(), 217);
        assert_eq!(GatewayTimeout.log_bytes(), 198);
        assert_eq!(BadRequest.log_bytes(), BadRequest.bytes().len() as u64);
    }

    #[test]
    fn content_lengths_match_bodies() {
        for e in [
            BadRequest,
            RequestTimeout,
            MethodNotAllowed,
            PayloadTooLarge,
            NotImplemented,
            BadGateway,
            ServiceUnavailable,
            GatewayTimeout,
        ] {
            let b = e.bytes();
            let text = std::str::from_utf8(b).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let cl = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.to_string())
                })
                .unwrap();
            assert_eq!(cl.parse::<usize>().unwrap(), body.len(), "{e:?}");
            assert!(text.starts_with(&format!("HTTP/1.1 {} ", e.status())));
        }
    }
}
