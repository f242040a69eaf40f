//! The HTTP/1.1 framing the admin listener needs: a request head parsed by `httparse`, and a
//! `Connection: close` response with a `Content-Length`.

use crate::limits;

/// The parts of a request the routes look at.
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
}

pub enum Parsed {
    Request(Request),
    /// The head is not complete yet.
    Partial,
    Bad(String),
}

/// Parses a request head (a body, if any, is ignored: no endpoint takes one).
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; limits::ADMIN_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(target)) = (request.method, request.path) else {
                return Parsed::Bad("no method or path".into());
            };
            let path = target.split_once('?').map_or(target, |(p, _)| p);
            Parsed::Request(Request {
                method: method.to_string(),
                path: path.to_string(),
            })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            Parsed::Bad(format!("more than {} headers", limits::ADMIN_HEADERS_MAX))
        }
        Err(e) => Parsed::Bad(e.to_string()),
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// Head and body (`head_only` for HEAD: the same head, no body).
    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_and_splits_the_query() {
        let Parsed::Request(r) = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n") else {
            panic!("not parsed");
        };
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.1\r\nHost"),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"\x00\x01 nonsense\r\n\r\n"),
            Parsed::Bad(_)
        ));
    }

    #[test]
    fn too_many_headers_is_bad() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=limits::ADMIN_HEADERS_MAX {
            req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&req), Parsed::Bad(_)));
    }
}
