//! IMDSv2 instance discovery: this node's `InstanceIdentity` (instance id, region, ENI, primary
//! and secondary private IPv4) from the instance metadata service, merged with config overrides.
//!
//! Uses `aws_config::imds::Client`, which does the IMDSv2 token dance and refreshes the token on
//! 401 itself. Timeouts are short and explicit: off EC2 the link-local address usually black-holes
//! and the service must say "not on EC2" in seconds, not hang.

use std::net::Ipv4Addr;
use std::time::Duration;

use aws_config::imds::client::error::ImdsError;

use super::InstanceIdentity;

/// Per-attempt connect / read bound for IMDS (it answers in well under 10 ms on EC2).
pub const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const IMDS_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on one metadata GET including the token fetch and retries.
pub const IMDS_OPERATION_TIMEOUT: Duration = Duration::from_secs(4);
pub const IMDS_MAX_ATTEMPTS: u32 = 3;

const ENDPOINT_ENV: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
const DISABLED_ENV: &str = "AWS_EC2_METADATA_DISABLED";

/// Identity fields given in config; each one given wins over IMDS.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct IdentityOverrides {
    pub instance_id: Option<String>,
    pub region: Option<String>,
    pub eni_id: Option<String>,
    pub primary_ip: Option<Ipv4Addr>,
    pub secondary_ip: Option<Ipv4Addr>,
}

impl IdentityOverrides {
    /// The identity if config alone provides all of it (then IMDS is never contacted).
    pub fn complete(&self) -> Option<InstanceIdentity> {
        Some(InstanceIdentity {
            instance_id: self.instance_id.clone()?,
            region: self.region.clone()?,
            eni_id: self.eni_id.clone()?,
            primary_ip: self.primary_ip?,
            secondary_ip: Some(self.secondary_ip?),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "IMDS is disabled ({DISABLED_ENV}=true) and config does not give {0}; \
         set instance_id, region, eni_id, primary_ip and secondary_ip in config"
    )]
    Disabled(&'static str),
    #[error(
        "cannot reach the EC2 instance metadata service at {endpoint} while looking up {path} \
         (not running on EC2, IMDSv2 disabled, or hop limit too low for a container?): {detail}; \
         give the identity in config instead"
    )]
    Unreachable {
        endpoint: String,
        path: String,
        detail: String,
    },
    #[error("IMDS answered {path} with HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("IMDS returned an unusable value for {path}: {value:?}")]
    BadValue { path: String, value: String },
    #[error("no network interface with id {0} on this instance")]
    EniNotFound(String),
    #[error("invalid IMDS endpoint {0:?}")]
    BadEndpoint(String),
}

/// A metadata reader bound to one endpoint.
#[derive(Debug, Clone)]
pub struct Imds {
    client: aws_config::imds::Client,
    endpoint: String,
}

impl Imds {
    /// `endpoint`: explicit base URL (tests point this at a loopback stub). `None` uses the SDK's
    /// resolution (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, profile, else the link-local address).
    pub fn new(endpoint: Option<&str>) -> Result<Imds, IdentityError> {
        let builder = aws_config::imds::Client::builder()
            .connect_timeout(IMDS_CONNECT_TIMEOUT)
            .read_timeout(IMDS_READ_TIMEOUT)
            .operation_attempt_timeout(IMDS_CONNECT_TIMEOUT + IMDS_READ_TIMEOUT)
            .operation_timeout(IMDS_OPERATION_TIMEOUT)
            .max_attempts(IMDS_MAX_ATTEMPTS);
        let (builder, shown) = match endpoint {
            Some(url) => (
                builder
                    .endpoint(url)
                    .map_err(|_| IdentityError::BadEndpoint(url.to_owned()))?,
                url.to_owned(),
            ),
            None => (
                builder,
                std::env::var(ENDPOINT_ENV).unwrap_or_else(|_| "http://169.254.169.254".into()),
            ),
        };
        Ok(Imds {
            client: builder.build(),
            endpoint: shown,
        })
    }

    /// GET `/latest/meta-data/<path>`, trimmed.
    pub async fn get(&self, path: &str) -> Result<String, IdentityError> {
        let full = format!("/latest/meta-data/{path}");
        match self.client.get(full.as_str()).await {
            Ok(v) => Ok(v.as_ref().trim().to_owned()),
            Err(ImdsError::ErrorResponse(r)) => Err(IdentityError::Status {
                path: full,
                status: r.response().status().as_u16(),
            }),
            Err(e) => Err(IdentityError::Unreachable {
                endpoint: self.endpoint.clone(),
                path: full,
                detail: super::aws::error_chain(&e),
            }),
        }
    }

    async fn ips_of_mac(&self, mac: &str) -> Result<Vec<Ipv4Addr>, IdentityError> {
        let path = format!("network/interfaces/macs/{mac}/local-ipv4s");
        let raw = self.get(&path).await?;
        raw.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.parse().map_err(|_| IdentityError::BadValue {
                    path: path.clone(),
                    value: l.to_owned(),
                })
            })
            .collect()
    }

    /// The MAC of the interface with this ENI id: the primary MAC in the common case (one
    /// lookup), else a scan of all attached interfaces.
    async fn mac_of_eni(&self, primary_mac: &str, eni_id: &str) -> Result<String, IdentityError> {
        let eni_of = |mac: String| async move {
            let id = self
                .get(&format!("network/interfaces/macs/{mac}/interface-id"))
                .await?;
            Ok::<_, IdentityError>((mac, id))
        };
        let (mac, id) = eni_of(primary_mac.to_owned()).await?;
        if id == eni_id {
            return Ok(mac);
        }
        let listing = self.get("network/interfaces/macs/").await?;
        for mac in listing.lines().map(|l| l.trim().trim_end_matches('/')) {
            if mac.is_empty() || mac == primary_mac {
                continue;
            }
            let (mac, id) = eni_of(mac.to_owned()).await?;
            if id == eni_id {
                return Ok(mac);
            }
        }
        Err(IdentityError::EniNotFound(eni_id.to_owned()))
    }
}

fn imds_disabled_by_env() -> bool {
    std::env::var(DISABLED_ENV).is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Discovers everything from IMDS (equivalent to `resolve_identity` with no overrides).
pub async fn discover(endpoint: Option<&str>) -> Result<InstanceIdentity, IdentityError> {
    resolve_identity(&IdentityOverrides::default(), endpoint).await
}

/// Config wins field by field; IMDS is asked only for what is missing, and not at all when
/// config gives everything. The ENI is the instance's primary interface unless config names one.
/// The first of its private IPv4s is the primary IP, the next (if any) the secondary.
pub async fn resolve_identity(
    overrides: &IdentityOverrides,
    endpoint: Option<&str>,
) -> Result<InstanceIdentity, IdentityError> {
    if let Some(id) = overrides.complete() {
        return Ok(id);
    }
    if endpoint.is_none() && imds_disabled_by_env() {
        return Err(IdentityError::Disabled(first_missing(overrides)));
    }
    let imds = Imds::new(endpoint)?;

    let instance_id = match &overrides.instance_id {
        Some(v) => v.clone(),
        None => non_empty(&imds, "instance-id").await?,
    };
    let region = match &overrides.region {
        Some(v) => v.clone(),
        None => non_empty(&imds, "placement/region").await?,
    };
    let need_ips = overrides.primary_ip.is_none() || overrides.secondary_ip.is_none();
    let (eni_id, ips) = if let (Some(eni), false) = (&overrides.eni_id, need_ips) {
        (eni.clone(), Vec::new())
    } else {
        let primary_mac = non_empty(&imds, "mac").await?;
        let (eni_id, mac) = match &overrides.eni_id {
            Some(eni) => (eni.clone(), imds.mac_of_eni(&primary_mac, eni).await?),
            None => {
                let path = format!("network/interfaces/macs/{primary_mac}/interface-id");
                (non_empty(&imds, &path).await?, primary_mac)
            }
        };
        let ips = if need_ips {
            imds.ips_of_mac(&mac).await?
        } else {
            Vec::new()
        };
        (eni_id, ips)
    };
    let primary_ip = match overrides.primary_ip {
        Some(ip) => ip,
        None => *ips.first().ok_or_else(|| IdentityError::BadValue {
            path: "network/interfaces/macs/<mac>/local-ipv4s".into(),
            value: String::new(),
        })?,
    };
    let secondary_ip = overrides
        .secondary_ip
        .or_else(|| ips.iter().copied().find(|ip| *ip != primary_ip));
    Ok(InstanceIdentity {
        instance_id,
        region,
        eni_id,
        primary_ip,
        secondary_ip,
    })
}

async fn non_empty(imds: &Imds, path: &str) -> Result<String, IdentityError> {
    let v = imds.get(path).await?;
    if v.is_empty() {
        return Err(IdentityError::BadValue {
            path: path.to_owned(),
            value: v,
        });
    }
    Ok(v)
}

fn first_missing(o: &IdentityOverrides) -> &'static str {
    if o.instance_id.is_none() {
        "instance_id"
    } else if o.region.is_none() {
        "region"
    } else if o.eni_id.is_none() {
        "eni_id"
    } else if o.primary_ip.is_none() {
        "primary_ip"
    } else {
        "secondary_ip"
    }
}
