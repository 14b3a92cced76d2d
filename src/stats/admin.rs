//! The authenticated admin API (HAProxy's `set server` / `show servers state` over HTTP).
//!
//! Routes (all need the admin token):
//! - `GET  /admin/servers` — every server with its state (JSON);
//! - `GET  /admin/servers/{listen}/{server}` — one server;
//! - `POST /admin/servers/{listen}/{server}/state`  body `ready|drain|maint`;
//! - `POST /admin/servers/{listen}/{server}/weight` body `N` (0..256) or `N%` of the config weight;
//! - `POST /admin/servers/{listen}/{server}/check`  body `enable|disable`.
//!
//! The value is read from a JSON body (`{"state":"drain"}` or `"drain"`) and, from clients that
//! are not browsers (no `Origin`, no `Sec-Fetch-*`: curl, scripts), also from a `text/plain`
//! body (`drain`) or a form body (`state=drain`, `value=drain`, or a bare `drain` as `curl -d`
//! sends it). Names may be given as `#<id>` like HAProxy. Answers: 200 with the server's JSON
//! after the change; 401 (with a `Bearer` challenge only) for missing/wrong/Basic credentials;
//! 403 for a cross-site request, or when no usable token file is configured; 415 for a browser
//! write without a JSON body; 400 with the reason for bad input; 404 for an unknown
//! listen/server/route. Who may call what is decided in `auth.rs`.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use crate::health::{self, AdminError};
use crate::runtime::unix_ms;

use super::json::{server_doc, ServerDoc};
use super::{auth, respond, text, Body, StatsState};

/// Admin bodies are one word; anything bigger is a mistake.
const MAX_BODY: usize = 4096;

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response<Body> {
    match serde_json::to_string(v) {
        Ok(s) => respond(status, "application/json", s),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn admin_error(e: AdminError) -> Response<Body> {
    let status = match e {
        AdminError::NoSuchListen | AdminError::NoSuchServer => StatusCode::NOT_FOUND,
        AdminError::BadInput(_) => StatusCode::BAD_REQUEST,
    };
    text(status, e.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(content_type: &str) -> bool {
    media_type(content_type) == "application/json"
}

/// The value of an admin POST, from a text, form or JSON body.
fn body_value(content_type: &str, body: &[u8], key: &str) -> Result<String, String> {
    let ct = media_type(content_type);
    let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
    let v = if ct == "application/x-www-form-urlencoded" {
        let body = body.trim();
        if body.contains('=') {
            body.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key || *k == "value")
                .and_then(|(_, v)| percent_decode(v))
                .ok_or_else(|| format!("form body needs {key}=<value>"))?
        } else {
            // `curl -d drain` (or `-d 50%`) labels a bare word as a form: taken as written.
            body.to_string()
        }
    } else if ct == "application/json" {
        let j: serde_json::Value =
            serde_json::from_str(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let field = match &j {
            serde_json::Value::Object(o) => o.get(key).or_else(|| o.get("value")),
            other => Some(other),
        };
        match field {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(format!("JSON body needs {{\"{key}\": <value>}}")),
        }
    } else {
        body.trim().to_string()
    };
    if v.trim().is_empty() {
        return Err(format!("missing {key} value in the request body"));
    }
    Ok(v)
}

#[derive(Serialize)]
struct AdminServer {
    listen: String,
    #[serde(flatten)]
    server: ServerDoc,
}

fn server_json(st: &StatsState, listen: &str, server: &str) -> Result<AdminServer, AdminError> {
    let snap = st.rt.load();
    let (l, s) = health::find_server(&snap, listen, server)?;
    Ok(AdminServer {
        listen: l.name.to_string(),
        server: server_doc(st, &snap, &l, &s, unix_ms()),
    })
}

pub async fn handle<B>(st: &StatsState, req: Request<B>) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(refused) = st.token.check_admin(&st.rt, req.headers()) {
        return refused;
    }
    let browser = auth::from_browser(req.headers());
    let path = req.uri().path().to_string();
    let segs: Option<Vec<String>> = path
        .trim_start_matches("/admin")
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let Some(segs) = segs else {
        return text(
            StatusCode::BAD_REQUEST,
            "invalid percent-encoding in the path",
        );
    };
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (segs.as_slice(), &method) {
        (["servers"], &Method::GET | &Method::HEAD) => {
            let snap = st.rt.load();
            let now = unix_ms();
            let all: Vec<AdminServer> = snap
                .listens
                .iter()
                .flat_map(|l| l.servers.iter().map(move |s| (l, s)))
                .map(|(l, s)| AdminServer {
                    listen: l.name.to_string(),
                    server: server_doc(st, &snap, l, s, now),
                })
                .collect();
            json_response(StatusCode::OK, &serde_json::json!({ "servers": all }))
        }
        (["servers", l, s], &Method::GET | &Method::HEAD) => match server_json(st, l, s) {
            Ok(doc) => json_response(StatusCode::OK, &doc),
            Err(e) => admin_error(e),
        },
        (["servers", l, s, action @ ("state" | "weight" | "check")], &Method::POST) => {
            let (l, s, action) = (l.to_string(), s.to_string(), action.to_string());
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if browser && !is_json(&ct) {
                // A browser can send text and forms cross-site without a preflight; JSON it
                // cannot. The dashboard sends JSON.
                return text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a browser must send the admin value as JSON (Content-Type: application/json)",
                );
            }
            let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "request body too large or unreadable",
                    )
                }
            };
            // Resolve the server before parsing the value so an unknown name is a 404 even with
            // a bad body.
            if let Err(e) = health::find_server(&st.rt.load(), &l, &s) {
                return admin_error(e);
            }
            let value = match body_value(&ct, &body, &action) {
                Ok(v) => v,
                Err(why) => return text(StatusCode::BAD_REQUEST, why),
            };
            let res = match action.as_str() {
                "state" => health::set_state(&st.rt, &l, &s, &value).map(|_| ()),
                "weight" => health::set_weight(&st.rt, &l, &s, &value).map(|_| ()),
                _ => health::set_check(&st.rt, &l, &s, &value).map(|_| ()),
            };
            match res.and_then(|()| server_json(st, &l, &s)) {
                Ok(doc) => {
                    tracing::info!("admin: {action} {l}/{s} <- {value:?}");
                    json_response(StatusCode::OK, &doc)
                }
                Err(e) => admin_error(e),
            }
        }
        (["servers", ..], _) => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, POST"));
            r
        }
        _ => text(StatusCode::NOT_FOUND, "no such admin route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_forms() {
        assert_eq!(
            body_value("text/plain", b" drain\n", "state").as_deref(),
            Ok("drain")
        );
        assert_eq!(body_value("", b"maint", "state").as_deref(), Ok("maint"));
        assert_eq!(
            body_value("application/x-www-form-urlencoded", b"state=ready", "state").as_deref(),
            Ok("ready")
        );
        assert_eq!(
            body_value(
                "application/x-www-form-urlencoded",
                b"weight=50%25",
                "weight"
            )
            .as_deref(),
            Ok("50%")
        );
        assert_eq!(
            body_value("application/json", br#"{"weight": 7}"#, "weight").as_deref(),
            Ok("7")
        );
        assert_eq!(
            body_value("application/x-www-form-urlencoded", b"drain", "state").as_deref(),
            Ok("drain")
        );
        assert!(body_value("text/plain", b"  ", "state").is_err());
        assert!(body_value("application/json", b"{", "state").is_err());
    }
}
