//! An in-process IMDSv2 stand-in serving one node of the moto world on loopback (moto's own IMDS
//! is static and has no `network/*` paths). Like IMDS with `HttpTokens=required`: `PUT
//! /latest/api/token` with a TTL header yields a token, every GET needs it (else 401), tokens
//! expire. Modes: `Ok`, `V1Only` (token PUT is 404, GETs need no token) and `Blackhole`
//! (connections accepted, never answered: what off-EC2 hosts see).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::moto::World;
use super::{respond, HttpResponse, LoopbackServer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsMode {
    Ok,
    V1Only,
    Blackhole,
}

/// What the stub reports about "this instance".
#[derive(Debug, Clone)]
pub struct ImdsNode {
    pub instance_id: String,
    pub region: String,
    pub mac: String,
    pub eni_id: String,
    /// Primary first.
    pub private_ips: Vec<Ipv4Addr>,
    pub subnet_id: String,
    pub vpc_id: String,
}

impl ImdsNode {
    pub fn from_world(world: &World, i: usize) -> ImdsNode {
        let n = world.node(i);
        ImdsNode {
            instance_id: n.instance_id.clone(),
            region: world.region.clone(),
            mac: n.mac.clone(),
            eni_id: n.eni_id.clone(),
            private_ips: vec![n.primary_ip, n.secondary_ip],
            subnet_id: world.subnet_id.clone(),
            vpc_id: world.vpc_id.clone(),
        }
    }

    fn tree(&self) -> HashMap<String, String> {
        let mac = &self.mac;
        let ips: Vec<String> = self.private_ips.iter().map(|ip| ip.to_string()).collect();
        let mut t = HashMap::new();
        let mut put = |k: String, v: String| {
            t.insert(k, v);
        };
        put("instance-id".into(), self.instance_id.clone());
        put("mac".into(), mac.clone());
        put(
            "local-ipv4".into(),
            ips.first().cloned().unwrap_or_default(),
        );
        put("placement/region".into(), self.region.clone());
        put(
            "placement/availability-zone".into(),
            format!("{}a", self.region),
        );
        put("network/interfaces/macs/".into(), format!("{mac}/"));
        let m = format!("network/interfaces/macs/{mac}");
        put(format!("{m}/local-ipv4s"), ips.join("\n"));
        put(format!("{m}/interface-id"), self.eni_id.clone());
        put(format!("{m}/device-number"), "0".into());
        put(format!("{m}/subnet-id"), self.subnet_id.clone());
        put(format!("{m}/vpc-id"), self.vpc_id.clone());
        t
    }
}

struct Shared {
    mode: Mutex<ImdsMode>,
    tree: Mutex<HashMap<String, String>>,
    tokens: Mutex<HashMap<String, Instant>>,
    requests: AtomicU64,
    paths: Mutex<Vec<String>>,
    token_puts: AtomicU64,
    unauthorized: AtomicU64,
}

/// The stub; stops on drop.
pub struct ImdsStub {
    server: LoopbackServer,
    shared: Arc<Shared>,
}

const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

impl ImdsStub {
    /// Serves node `i` of the world.
    pub fn for_node(world: &World, i: usize) -> ImdsStub {
        Self::start(ImdsNode::from_world(world, i), ImdsMode::Ok)
    }

    pub fn start(node: ImdsNode, mode: ImdsMode) -> ImdsStub {
        let shared = Arc::new(Shared {
            mode: Mutex::new(mode),
            tree: Mutex::new(node.tree()),
            tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            paths: Mutex::new(Vec::new()),
            token_puts: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
        });
        let sh = shared.clone();
        let server = LoopbackServer::start("imds-stub", move |req| {
            let sh = sh.clone();
            async move { serve(&sh, req).await }
        });
        ImdsStub { server, shared }
    }

    /// `http://127.0.0.1:<port>`: for `AWS_EC2_METADATA_SERVICE_ENDPOINT` or an explicit endpoint.
    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn set_mode(&self, mode: ImdsMode) {
        *self.shared.mode.lock().expect("imds mode") = mode;
    }

    /// Replaces (or with `None` removes) one metadata path, e.g. to drop the secondary IP.
    pub fn set_path(&self, path: &str, value: Option<&str>) {
        let mut t = self.shared.tree.lock().expect("imds tree");
        match value {
            Some(v) => t.insert(path.to_string(), v.to_string()),
            None => t.remove(path),
        };
    }

    /// Invalidates every issued token (the client must fetch a new one after a 401).
    pub fn expire_tokens(&self) {
        self.shared.tokens.lock().expect("imds tokens").clear();
    }

    /// All requests received (token PUTs included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Metadata paths GET so far (relative to `/latest/meta-data/`), in order.
    pub fn requested_paths(&self) -> Vec<String> {
        self.shared.paths.lock().expect("imds paths").clone()
    }

    pub fn token_requests(&self) -> u64 {
        self.shared.token_puts.load(Ordering::Relaxed)
    }

    pub fn unauthorized(&self) -> u64 {
        self.shared.unauthorized.load(Ordering::Relaxed)
    }
}

async fn serve(sh: &Shared, req: http::Request<bytes::Bytes>) -> Option<HttpResponse> {
    sh.requests.fetch_add(1, Ordering::Relaxed);
    let mode = *sh.mode.lock().expect("imds mode");
    if mode == ImdsMode::Blackhole {
        // Never answer; the server cancels this when the stub is dropped.
        std::future::pending::<()>().await;
    }
    let path = req.uri().path().to_string();
    let text = |status: u16, body: String| Some(respond(status, "text/plain", body));
    if req.method() == http::Method::PUT {
        if path != "/latest/api/token" || mode == ImdsMode::V1Only {
            return text(404, "Not Found".into());
        }
        sh.token_puts.fetch_add(1, Ordering::Relaxed);
        let ttl = req
            .headers()
            .get(TOKEN_TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|t| (1..=21600).contains(t));
        let Some(ttl) = ttl else {
            return text(400, "Bad Request".into());
        };
        let token = format!("{:032x}", rand::random::<u128>());
        sh.tokens
            .lock()
            .expect("imds tokens")
            .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        let mut resp = respond(200, "text/plain", token);
        resp.headers_mut().insert(
            TOKEN_TTL_HEADER,
            http::HeaderValue::from_str(&ttl.to_string()).expect("ttl header"),
        );
        return Some(resp);
    }
    if req.method() != http::Method::GET {
        return text(405, "Method Not Allowed".into());
    }
    if mode == ImdsMode::Ok {
        let valid = req
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| sh.tokens.lock().expect("imds tokens").get(t).copied())
            .is_some_and(|exp| exp > Instant::now());
        if !valid {
            sh.unauthorized.fetch_add(1, Ordering::Relaxed);
            return text(401, "Unauthorized".into());
        }
    }
    let Some(key) = path.strip_prefix("/latest/meta-data/") else {
        return text(404, "Not Found".into());
    };
    sh.paths.lock().expect("imds paths").push(key.to_string());
    match sh.tree.lock().expect("imds tree").get(key) {
        Some(v) => text(200, v.clone()),
        None => text(404, "Not Found".into()),
    }
}
