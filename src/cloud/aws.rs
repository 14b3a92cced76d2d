//! EC2 through aws-sdk-ec2: `AwsSettings` (the `[aws]` config table), `Ec2Client` (the `Ec2`
//! implementation with explicit timeouts and bounded retries), the mapping from SDK errors to
//! `CloudError`, and per-operation API call accounting for the stats page.
//!
//! Every call is bounded by `operation_timeout`: the SDK has no default read/operation timeout
//! (a stalled upstream holds a call indefinitely), so both are always set here.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_ec2::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Tag};

use super::{AddressState, CloudError, Ec2, InstanceFact, Placement, WitnessRead, WitnessStamp};

/// Per-attempt bound: one slow answer must not eat the whole operation budget.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one logical call including all retries and backoff.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP (+TLS) connect bound; the EC2 endpoint is normally a few ms away.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP attempts per call (the SDK default is 3). One: the failover brain owns retries (backoff,
/// jitter) and its call budget is charged `max_attempts` per call, so SDK retries would only
/// shrink the number of calls the budget allows and feed an account-wide throttle.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// Cap on the SDK's exponential backoff (its default is 20 s, longer than a takeover should wait).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The tag edgelb writes on its own ENI as a liveness witness: value `<node>@<unix secs>`.
pub const WITNESS_TAG: &str = "edgelb:witness";

/// The `[aws]` table of the product config.
#[derive(Clone, serde::Deserialize)]
#[serde(default)]
pub struct AwsSettings {
    /// Region of the EC2 API; else `AWS_REGION`/profile, else the instance's region from IMDS.
    pub region: Option<String>,
    /// EC2 endpoint override; else the SDK's own `AWS_ENDPOINT_URL_EC2` / `AWS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Never read from the config file (credentials belong in the SDK's provider chain). When
    /// set, the client is built hermetically: no environment, profile or IMDS lookups at all,
    /// which is what in-process tests need (they run in parallel and must not touch `~/.aws`).
    #[serde(skip)]
    pub static_credentials: Option<Credentials>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_backoff: DEFAULT_MAX_BACKOFF,
            static_credentials: None,
        }
    }
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_backoff", &self.max_backoff)
            .field("static_credentials", &self.static_credentials.is_some())
            .finish()
    }
}

impl AwsSettings {
    /// Settings for tests against a loopback endpoint: fixed region and dummy credentials, built
    /// without consulting the environment.
    pub fn for_endpoint(endpoint_url: impl Into<String>) -> Self {
        AwsSettings {
            region: Some("us-east-1".to_string()),
            endpoint_url: Some(endpoint_url.into()),
            static_credentials: Some(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "edgelb-static",
            )),
            ..AwsSettings::default()
        }
    }

    pub fn validate(&self) -> Result<(), AwsSetupError> {
        if self.max_attempts == 0 {
            return Err(AwsSetupError::Invalid(
                "max_attempts must be at least 1".into(),
            ));
        }
        if self.attempt_timeout.is_zero() || self.operation_timeout.is_zero() {
            return Err(AwsSetupError::Invalid("timeouts must be non-zero".into()));
        }
        if self.attempt_timeout > self.operation_timeout {
            return Err(AwsSetupError::Invalid(format!(
                "attempt_timeout ({:?}) exceeds operation_timeout ({:?})",
                self.attempt_timeout, self.operation_timeout
            )));
        }
        if let Some(url) = &self.endpoint_url {
            if url.parse::<http::Uri>().is_err() {
                return Err(AwsSetupError::Invalid(format!(
                    "endpoint_url {url:?} is not a URI"
                )));
            }
        }
        Ok(())
    }

    fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_max_backoff(self.max_backoff)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AwsSetupError {
    #[error("invalid [aws] setting: {0}")]
    Invalid(String),
    #[error("no AWS region: set [aws] region, AWS_REGION, or run on EC2 so IMDS can tell")]
    NoRegion,
}

/// The EC2 operations edgelb calls, for accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    DescribeAddresses,
    AssociateAddress,
    DisassociateAddress,
    CreateTags,
    DescribeNetworkInterfaces,
    AssignPrivateIpAddresses,
    DescribeInstanceStatus,
}

impl Op {
    pub const ALL: [Op; 7] = [
        Op::DescribeAddresses,
        Op::AssociateAddress,
        Op::DisassociateAddress,
        Op::CreateTags,
        Op::DescribeNetworkInterfaces,
        Op::AssignPrivateIpAddresses,
        Op::DescribeInstanceStatus,
    ];

    /// The EC2 `Action` name.
    pub fn action(self) -> &'static str {
        match self {
            Op::DescribeAddresses => "DescribeAddresses",
            Op::AssociateAddress => "AssociateAddress",
            Op::DisassociateAddress => "DisassociateAddress",
            Op::CreateTags => "CreateTags",
            Op::DescribeNetworkInterfaces => "DescribeNetworkInterfaces",
            Op::AssignPrivateIpAddresses => "AssignPrivateIpAddresses",
            Op::DescribeInstanceStatus => "DescribeInstanceStatus",
        }
    }

    fn from_action(action: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.action() == action)
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
struct OpCounters {
    calls: AtomicU64,
    attempts: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Default)]
struct ApiStats {
    ops: [OpCounters; Op::ALL.len()],
}

/// Counters for one operation. `attempts` counts HTTP requests sent (SDK retries included): that
/// is what the account-wide throttling buckets charge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OpCallCount {
    pub calls: u64,
    pub attempts: u64,
    pub errors: u64,
}

/// Snapshot of the API calls spent since the client was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ApiCalls {
    pub by_action: Vec<(&'static str, OpCallCount)>,
}

impl ApiCalls {
    pub fn get(&self, op: Op) -> OpCallCount {
        self.by_action
            .iter()
            .find(|(name, _)| *name == op.action())
            .map(|(_, c)| *c)
            .unwrap_or_default()
    }

    pub fn total_attempts(&self) -> u64 {
        self.by_action.iter().map(|(_, c)| c.attempts).sum()
    }
}

/// Counts every transmitted attempt by the `Action` in its query-protocol form body, so SDK-level
/// retries are visible too.
#[derive(Debug)]
struct AttemptCounter(Arc<ApiStats>);

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "edgelb-attempt-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = context
            .request()
            .body()
            .bytes()
            .and_then(action_of_form_body)
            .and_then(Op::from_action);
        if let Some(op) = op {
            self.0.ops[op.index()]
                .attempts
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn action_of_form_body(body: &[u8]) -> Option<&str> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
}

/// aws-sdk-ec2 behind the `Ec2` trait. Cheap to clone (shares the SDK client and counters).
#[derive(Clone, Debug)]
pub struct Ec2Client {
    client: aws_sdk_ec2::Client,
    stats: Arc<ApiStats>,
}

impl Ec2Client {
    /// Builds the SDK client. Region: `settings.region`, else `AWS_REGION`/profile, else
    /// `identity_region_fallback` (the region IMDS reported), else the SDK's default chain.
    /// With `settings.static_credentials` nothing outside `settings` is consulted.
    pub async fn new(
        settings: &AwsSettings,
        identity_region_fallback: Option<&str>,
    ) -> Result<Self, AwsSetupError> {
        settings.validate()?;
        let stats = Arc::new(ApiStats::default());
        let builder = match &settings.static_credentials {
            Some(credentials) => {
                let region = settings
                    .region
                    .clone()
                    .or_else(|| identity_region_fallback.map(str::to_owned))
                    .ok_or(AwsSetupError::NoRegion)?;
                let mut b = aws_sdk_ec2::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new(region))
                    .credentials_provider(credentials.clone());
                if let Some(url) = &settings.endpoint_url {
                    b = b.endpoint_url(url);
                }
                b
            }
            None => {
                use aws_config::meta::region::RegionProviderChain;
                let region =
                    RegionProviderChain::first_try(settings.region.clone().map(Region::new))
                        .or_else(aws_config::environment::EnvironmentVariableRegionProvider::new())
                        .or_else(identity_region_fallback.map(|r| Region::new(r.to_owned())))
                        .or_default_provider();
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
                if let Some(url) = &settings.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                let sdk = loader.load().await;
                if sdk.region().is_none() {
                    return Err(AwsSetupError::NoRegion);
                }
                aws_sdk_ec2::config::Builder::from(&sdk)
            }
        };
        let config = builder
            .timeout_config(settings.timeout_config())
            .retry_config(settings.retry_config())
            .interceptor(AttemptCounter(stats.clone()))
            .build();
        Ok(Ec2Client {
            client: aws_sdk_ec2::Client::from_conf(config),
            stats,
        })
    }

    /// API calls spent so far, per operation.
    pub fn api_calls(&self) -> ApiCalls {
        ApiCalls {
            by_action: Op::ALL
                .into_iter()
                .map(|op| {
                    let c = &self.stats.ops[op.index()];
                    let count = OpCallCount {
                        calls: c.calls.load(Ordering::Relaxed),
                        attempts: c.attempts.load(Ordering::Relaxed),
                        errors: c.errors.load(Ordering::Relaxed),
                    };
                    (op.action(), count)
                })
                .collect(),
        }
    }

    /// Startup IAM self-check: AssociateAddress with DryRun=true. EC2 answers `DryRunOperation`
    /// when the call would be allowed and `UnauthorizedOperation` (=> `Denied`) when not.
    pub async fn dry_run_check(
        &self,
        allocation_id: &str,
        target: &Placement,
    ) -> Result<(), CloudError> {
        self.stats.ops[Op::AssociateAddress.index()]
            .calls
            .fetch_add(1, Ordering::Relaxed);
        let result = self
            .client
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(&target.eni_id)
            .private_ip_address(target.private_ip.to_string())
            .allow_reassociation(true)
            .dry_run(true)
            .send()
            .await;
        match result {
            // Not expected with DryRun, but it does mean the caller is allowed.
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("DryRunOperation") => Ok(()),
            Err(e) => Err(self.failed(Op::AssociateAddress, map_sdk_error(e))),
        }
    }

    fn begin(&self, op: Op) {
        self.stats.ops[op.index()]
            .calls
            .fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, op: Op, err: CloudError) -> CloudError {
        self.stats.ops[op.index()]
            .errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(action = op.action(), error = %err, "EC2 call failed");
        err
    }

    async fn describe_enis(
        &self,
        eni_ids: &[String],
    ) -> Result<Vec<aws_sdk_ec2::types::NetworkInterface>, CloudError> {
        self.begin(Op::DescribeNetworkInterfaces);
        // A filter (rather than NetworkInterfaceIds) keeps the call out of EC2's stricter
        // "unfiltered" throttling bucket and makes unknown ids an empty answer, not an error.
        let filter = Filter::builder()
            .name("network-interface-id")
            .set_values(Some(eni_ids.to_vec()))
            .build();
        self.client
            .describe_network_interfaces()
            .filters(filter)
            .send()
            .await
            .map(|out| out.network_interfaces.unwrap_or_default())
            .map_err(|e| self.failed(Op::DescribeNetworkInterfaces, map_sdk_error(e)))
    }

    /// DescribeInstanceStatus (`IncludeAllInstances`) for the attached instances: per instance
    /// id, `Some(why)` when it cannot be running edgelb. No call when nothing is attached.
    async fn instance_states(
        &self,
        attached: &[(String, Option<String>)],
    ) -> Result<Vec<(String, Option<String>)>, CloudError> {
        let ids: Vec<String> = attached.iter().filter_map(|(_, i)| i.clone()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.begin(Op::DescribeInstanceStatus);
        let out = self
            .client
            .describe_instance_status()
            .set_instance_ids(Some(ids.clone()))
            .include_all_instances(true)
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let err = self.failed(Op::DescribeInstanceStatus, map_sdk_error(e));
                // A single id that EC2 no longer knows (terminated long ago) is gone; with
                // several, the error does not say which.
                if let (CloudError::Rejected { code, .. }, [id]) = (&err, ids.as_slice()) {
                    if code == "InvalidInstanceID.NotFound" {
                        return Ok(vec![(id.clone(), Some(format!("instance {id} not found")))]);
                    }
                }
                return Err(err);
            }
        };
        Ok(out
            .instance_statuses()
            .iter()
            .filter_map(|st| {
                let id = non_empty(st.instance_id())?.to_owned();
                let state = st
                    .instance_state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned());
                let impaired = st
                    .instance_status()
                    .and_then(|s| s.status())
                    .is_some_and(|s| *s == aws_sdk_ec2::types::SummaryStatus::Impaired);
                let gone = instance_gone(&id, state.as_deref(), impaired);
                Some((id, gone))
            })
            .collect())
    }
}

/// Whether an instance in this EC2 state cannot be running edgelb (see `InstanceFact::gone`).
/// An unknown state name proves nothing.
pub fn instance_gone(id: &str, state: Option<&str>, impaired: bool) -> Option<String> {
    match state {
        Some("running") if impaired => Some(format!("instance {id} fails its status check")),
        Some(s @ ("pending" | "stopping" | "stopped" | "shutting-down" | "terminated")) => {
            Some(format!("instance {id} is {s}"))
        }
        _ => None,
    }
}

/// An ENI and its private IPv4s, as a peer's placement slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniSlots {
    pub eni_id: String,
    pub primary_ip: Ipv4Addr,
    pub secondary_ips: Vec<Ipv4Addr>,
}

impl Ec2Client {
    /// The ENIs matching one DescribeNetworkInterfaces filter (e.g. `addresses.private-ip-address`
    /// or `network-interface-id`), with their primary and secondary private IPs.
    pub async fn eni_slots(&self, filter: &str, value: &str) -> Result<Vec<EniSlots>, CloudError> {
        self.begin(Op::DescribeNetworkInterfaces);
        let f = Filter::builder().name(filter).values(value).build();
        let enis = self
            .client
            .describe_network_interfaces()
            .filters(f)
            .send()
            .await
            .map(|out| out.network_interfaces.unwrap_or_default())
            .map_err(|e| self.failed(Op::DescribeNetworkInterfaces, map_sdk_error(e)))?;
        let mut out = Vec::new();
        for eni in enis {
            let Some(id) = non_empty(eni.network_interface_id()) else {
                continue;
            };
            let mut primary = None;
            let mut secondary_ips = Vec::new();
            for p in eni.private_ip_addresses() {
                let Some(ip) = non_empty(p.private_ip_address()).and_then(|s| s.parse().ok())
                else {
                    continue;
                };
                if p.primary() == Some(true) {
                    primary = Some(ip);
                } else {
                    secondary_ips.push(ip);
                }
            }
            let primary = primary
                .or_else(|| non_empty(eni.private_ip_address()).and_then(|s| s.parse().ok()));
            if let Some(primary_ip) = primary {
                secondary_ips.retain(|ip| *ip != primary_ip);
                out.push(EniSlots {
                    eni_id: id.to_string(),
                    primary_ip,
                    secondary_ips,
                });
            }
        }
        Ok(out)
    }
}

/// Treats the `""` moto (and sometimes EC2) returns for absent fields as absent.
fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn malformed(what: String) -> CloudError {
    CloudError::Rejected {
        code: "MalformedResponse".into(),
        message: what,
    }
}

fn parse_ip(field: &str, value: &str) -> Result<Ipv4Addr, CloudError> {
    value
        .parse()
        .map_err(|_| malformed(format!("{field} {value:?} is not an IPv4 address")))
}

fn address_state(a: &aws_sdk_ec2::types::Address) -> Result<Option<AddressState>, CloudError> {
    let Some(allocation_id) = non_empty(a.allocation_id()) else {
        // EC2-Classic style address without an allocation id: not one of ours.
        return Ok(None);
    };
    let public_ip = non_empty(a.public_ip())
        .map(|ip| parse_ip("PublicIp", ip))
        .transpose()?;
    let association_id = non_empty(a.association_id()).map(str::to_owned);
    let placement = match (
        association_id.as_ref(),
        non_empty(a.network_interface_id()),
        non_empty(a.private_ip_address()),
    ) {
        (Some(_), Some(eni), Some(ip)) => Some(Placement {
            eni_id: eni.to_owned(),
            private_ip: parse_ip("PrivateIpAddress", ip)?,
        }),
        _ => None,
    };
    Ok(Some(AddressState {
        allocation_id: allocation_id.to_owned(),
        public_ip,
        association_id,
        placement,
        instance_id: non_empty(a.instance_id()).map(str::to_owned),
    }))
}

/// Parses a witness tag value `<node>@<unix secs>`; the node name may itself contain `@`.
pub fn parse_witness(value: &str) -> Option<(String, u64)> {
    let (node, stamp) = value.rsplit_once('@')?;
    if node.is_empty() {
        return None;
    }
    Some((node.to_owned(), stamp.parse().ok()?))
}

pub fn format_witness(node: &str, now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{node}@{secs}")
}

/// `outer: cause: root cause`, without the Debug dumps `DisplayErrorContext` appends (they carry
/// whole HTTP responses and make log lines unreadable).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
    }
    out
}

const THROTTLING_CODES: &[&str] = &[
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
];
const DENIED_CODES: &[&str] = &[
    "UnauthorizedOperation",
    "AuthFailure",
    "Blocked",
    "OptInRequired",
];

/// Maps an SDK failure onto the failover vocabulary. By error code first (the SDK surfaces
/// throttling as the `Unhandled` variant), then by HTTP status, then by failure kind.
pub fn map_sdk_error<E>(err: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let message = err.message().map(str::to_owned).unwrap_or_default();
    let status = err.raw_response().map(|r| r.status().as_u16());
    if let Some(code) = &code {
        if THROTTLING_CODES.contains(&code.as_str()) {
            return CloudError::Throttled(format!("{code}: {message}"));
        }
        if code == "InvalidAssociationID.NotFound" {
            return CloudError::StaleAssociation(message);
        }
        if DENIED_CODES.contains(&code.as_str()) {
            return CloudError::Denied(format!("{code}: {message}"));
        }
    }
    if status.is_some_and(|s| s >= 500) {
        let code = code.unwrap_or_else(|| "ServerError".into());
        return CloudError::Unavailable(format!("HTTP {}: {code}: {message}", status.unwrap_or(0)));
    }
    let detail = error_chain(&err);
    match err {
        SdkError::TimeoutError(_) => CloudError::Unavailable(format!("timeout: {detail}")),
        SdkError::DispatchFailure(_) => CloudError::Unavailable(format!("dispatch: {detail}")),
        // Credentials not (yet) resolvable surface here; the provider chain recovers by itself.
        SdkError::ConstructionFailure(_) => {
            CloudError::Unavailable(format!("request construction: {detail}"))
        }
        SdkError::ResponseError(_) => CloudError::Unavailable(format!("bad response: {detail}")),
        _ => CloudError::Rejected {
            code: code.unwrap_or_else(|| format!("HTTP{}", status.unwrap_or(0))),
            message: if message.is_empty() { detail } else { message },
        },
    }
}

impl Ec2 for Ec2Client {
    /// Uses the `allocation-id` *filter*, not `AllocationIds`: an unknown or released id is then
    /// simply missing from the answer instead of failing the whole call
    /// (`InvalidAllocationID.NotFound`), so one bad id cannot blind the reconcile loop.
    async fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> Result<Vec<AddressState>, CloudError> {
        if allocation_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.begin(Op::DescribeAddresses);
        let filter = Filter::builder()
            .name("allocation-id")
            .set_values(Some(allocation_ids.to_vec()))
            .build();
        let out = self
            .client
            .describe_addresses()
            .filters(filter)
            .send()
            .await
            .map_err(|e| self.failed(Op::DescribeAddresses, map_sdk_error(e)))?;
        let mut states = Vec::new();
        for a in out.addresses() {
            if let Some(state) = address_state(a)? {
                states.push(state);
            }
        }
        Ok(states)
    }

    async fn associate(
        &self,
        allocation_id: &str,
        target: &Placement,
    ) -> Result<String, CloudError> {
        self.begin(Op::AssociateAddress);
        let out = self
            .client
            .associate_address()
            .allocation_id(allocation_id)
            .network_interface_id(&target.eni_id)
            .private_ip_address(target.private_ip.to_string())
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| self.failed(Op::AssociateAddress, map_sdk_error(e)))?;
        non_empty(out.association_id())
            .map(str::to_owned)
            .ok_or_else(|| malformed("AssociateAddress returned no AssociationId".into()))
    }

    async fn disassociate(&self, association_id: &str) -> Result<(), CloudError> {
        self.begin(Op::DisassociateAddress);
        self.client
            .disassociate_address()
            .association_id(association_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failed(Op::DisassociateAddress, map_sdk_error(e)))
    }

    async fn write_witness(
        &self,
        eni_id: &str,
        node: &str,
        now: SystemTime,
    ) -> Result<(), CloudError> {
        self.begin(Op::CreateTags);
        let tag = Tag::builder()
            .key(WITNESS_TAG)
            .value(format_witness(node, now))
            .build();
        self.client
            .create_tags()
            .resources(eni_id)
            .tags(tag)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.failed(Op::CreateTags, map_sdk_error(e)))
    }

    async fn read_witnesses(&self, eni_ids: &[String]) -> Result<WitnessRead, CloudError> {
        if eni_ids.is_empty() {
            return Ok(WitnessRead::default());
        }
        let enis = self.describe_enis(eni_ids).await?;
        let mut read = WitnessRead::default();
        // ENI id -> attached instance id (None: the ENI exists but is not attached).
        let mut attached: Vec<(String, Option<String>)> = Vec::new();
        for eni in &enis {
            let Some(eni_id) = non_empty(eni.network_interface_id()) else {
                continue;
            };
            let instance = eni
                .attachment()
                .filter(|a| {
                    matches!(
                        a.status(),
                        Some(aws_sdk_ec2::types::AttachmentStatus::Attached)
                            | Some(aws_sdk_ec2::types::AttachmentStatus::Attaching)
                    )
                })
                .and_then(|a| non_empty(a.instance_id()))
                .map(str::to_owned);
            attached.push((eni_id.to_owned(), instance));
            let value = eni
                .tag_set()
                .iter()
                .find(|t| t.key() == Some(WITNESS_TAG))
                .and_then(|t| t.value());
            match value.map(|v| (v, parse_witness(v))) {
                Some((_, Some((node, stamp_unix)))) => read.stamps.push(WitnessStamp {
                    eni_id: eni_id.to_owned(),
                    node,
                    stamp_unix,
                }),
                Some((raw, None)) => {
                    tracing::warn!(eni_id, value = raw, "ignoring malformed witness tag");
                }
                None => {}
            }
        }
        match self.instance_states(&attached).await {
            Ok(states) => {
                for eni_id in eni_ids {
                    let fact = match attached.iter().find(|(e, _)| e == eni_id) {
                        None => InstanceFact {
                            eni_id: eni_id.clone(),
                            instance_id: None,
                            gone: Some("its ENI no longer exists".into()),
                        },
                        Some((_, None)) => InstanceFact {
                            eni_id: eni_id.clone(),
                            instance_id: None,
                            gone: Some("its ENI is attached to no instance".into()),
                        },
                        Some((_, Some(id))) => InstanceFact {
                            eni_id: eni_id.clone(),
                            instance_id: Some(id.clone()),
                            gone: states
                                .iter()
                                .find(|(i, _)| i == id)
                                .and_then(|(_, g)| g.clone()),
                        },
                    };
                    read.instances.push(fact);
                }
            }
            Err(err) => {
                // Lacking ec2:DescribeInstanceStatus (an older IAM policy) or a passing fault:
                // the stamps alone still decide, as before.
                tracing::warn!(
                    "cluster: instance states unreadable ({err}); the witness alone decides"
                );
            }
        }
        Ok(read)
    }

    async fn ensure_secondary_ip(&self, eni_id: &str) -> Result<Ipv4Addr, CloudError> {
        let ids = [eni_id.to_owned()];
        let before = self.describe_enis(&ids).await?;
        let eni = before.first().ok_or_else(|| CloudError::Rejected {
            code: "InvalidNetworkInterfaceID.NotFound".into(),
            message: format!("network interface {eni_id} does not exist"),
        })?;
        let known: Vec<&str> = eni
            .private_ip_addresses()
            .iter()
            .filter_map(|p| non_empty(p.private_ip_address()))
            .collect();
        if let Some(existing) = eni
            .private_ip_addresses()
            .iter()
            .find(|p| p.primary() != Some(true))
            .and_then(|p| non_empty(p.private_ip_address()))
        {
            return parse_ip("PrivateIpAddress", existing);
        }

        self.begin(Op::AssignPrivateIpAddresses);
        let out = self
            .client
            .assign_private_ip_addresses()
            .network_interface_id(eni_id)
            .secondary_private_ip_address_count(1)
            .send()
            .await
            .map_err(|e| self.failed(Op::AssignPrivateIpAddresses, map_sdk_error(e)))?;
        // EC2 lists only the new address here; moto lists all of them: pick one we did not have.
        let fresh = out
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| non_empty(a.private_ip_address()))
            .find(|ip| !known.contains(ip));
        match fresh {
            Some(ip) => parse_ip("PrivateIpAddress", ip),
            None => {
                let after = self.describe_enis(&ids).await?;
                after
                    .first()
                    .into_iter()
                    .flat_map(|e| e.private_ip_addresses())
                    .find(|p| p.primary() != Some(true))
                    .and_then(|p| non_empty(p.private_ip_address()))
                    .map(|ip| parse_ip("PrivateIpAddress", ip))
                    .unwrap_or_else(|| {
                        Err(malformed(format!(
                            "{eni_id} still has no secondary IP after assigning one"
                        )))
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witness_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = format_witness("lb@a", t);
        assert_eq!(v, "lb@a@1700000000");
        assert_eq!(parse_witness(&v), Some(("lb@a".into(), 1_700_000_000)));
        assert_eq!(parse_witness("nostamp"), None);
        assert_eq!(parse_witness("@12"), None);
        assert_eq!(parse_witness("a@x"), None);
    }

    #[test]
    fn action_from_body() {
        assert_eq!(
            action_of_form_body(b"Action=DescribeAddresses&Version=2016-11-15"),
            Some("DescribeAddresses")
        );
        assert_eq!(action_of_form_body(b"Version=1"), None);
    }

    #[test]
    fn settings_defaults_and_durations() {
        let s: AwsSettings = toml::from_str("attempt_timeout = \"1s\"\nmax_attempts = 2").unwrap();
        assert_eq!(s.attempt_timeout, Duration::from_secs(1));
        assert_eq!(s.operation_timeout, DEFAULT_OPERATION_TIMEOUT);
        assert_eq!(s.max_attempts, 2);
        assert!(s.static_credentials.is_none());
        s.validate().unwrap();
        let bad = AwsSettings {
            attempt_timeout: Duration::from_secs(30),
            ..AwsSettings::default()
        };
        assert!(bad.validate().is_err());
    }
}
