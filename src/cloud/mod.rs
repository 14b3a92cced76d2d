//! The cloud boundary: the few EC2 facts and calls Elastic IP failover needs, behind a small
//! trait, so the failover brain never sees an SDK type and the I/O shell can be driven against a
//! real EC2 API (AWS, or moto on loopback in tests).
//!
//! This module owns the vocabulary (`AddressState`, `Placement`, `CloudError`) and the trait.
//! `aws` implements it with aws-sdk-ec2; `imds` discovers this instance's identity via IMDSv2.

pub mod aws;
pub mod emulator;
pub mod imds;

use std::net::Ipv4Addr;
use std::time::SystemTime;

/// Where an Elastic IP is (or should be) attached: an ENI and one of its private IPv4s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Placement {
    pub eni_id: String,
    pub private_ip: Ipv4Addr,
}

/// One Elastic IP as DescribeAddresses reports it. Empty strings from the API are normalised to
/// `None` (moto returns `""` for absent fields).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddressState {
    pub allocation_id: String,
    pub public_ip: Option<Ipv4Addr>,
    /// Present only while associated.
    pub association_id: Option<String>,
    /// `Some` only while associated.
    pub placement: Option<Placement>,
    pub instance_id: Option<String>,
}

/// This node's identity on EC2: discovered from IMDSv2 or given in config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: String,
    pub eni_id: String,
    pub primary_ip: Ipv4Addr,
    /// The private IP a peer's EIP is moved onto; `None` when the ENI has none yet.
    pub secondary_ip: Option<Ipv4Addr>,
}

/// A liveness witness read from EC2 (issue 9: partition witness): the timestamp a node last wrote
/// on its own ENI as a tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WitnessStamp {
    pub eni_id: String,
    pub node: String,
    /// Seconds since the Unix epoch, as written by that node.
    pub stamp_unix: u64,
}

/// What EC2 itself says of the instance behind a peer's ENI, read together with its witness
/// while the peer is silent. Positive evidence of death that a partition cannot fake: a node cut
/// off from its peers is still `running` with its ENI attached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceFact {
    pub eni_id: String,
    /// The instance the ENI is attached to (None: not attached, or the ENI is gone).
    pub instance_id: Option<String>,
    /// `Some(why)` when EC2 shows that no edgelb can be running behind this ENI: the ENI is
    /// gone (deleted with its instance) or detached, the instance is `pending`, `stopping`,
    /// `stopped`, `shutting-down` or `terminated`, or its instance status check is `impaired`.
    /// `None`: running, or unknown (the instance status could not be read).
    pub gone: Option<String>,
}

/// One witness read: the stamps, and what EC2 says of the instances behind those ENIs.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WitnessRead {
    pub stamps: Vec<WitnessStamp>,
    /// One per ENI asked about when the instance states could be read; empty otherwise.
    pub instances: Vec<InstanceFact>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CloudError {
    /// RequestLimitExceeded / Throttling: back off and retry later.
    #[error("EC2 API throttled: {0}")]
    Throttled(String),
    /// 5xx, timeouts, connection errors: retry later.
    #[error("EC2 API unavailable: {0}")]
    Unavailable(String),
    /// `InvalidAssociationID.NotFound` on a compare-and-swap disassociate: someone else moved it.
    #[error("association changed under us: {0}")]
    StaleAssociation(String),
    /// UnauthorizedOperation and friends: retrying will not help until IAM changes.
    #[error("EC2 API denied: {0}")]
    Denied(String),
    /// Anything else the API rejected (bad ids, bad parameters).
    #[error("EC2 API rejected the call: {code}: {message}")]
    Rejected { code: String, message: String },
}

impl CloudError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CloudError::Throttled(_) | CloudError::Unavailable(_))
    }
}

/// The EC2 calls edgelb makes. Implementations must set explicit timeouts: a call never hangs.
pub trait Ec2: Send + Sync + 'static {
    /// DescribeAddresses for exactly these allocation ids.
    fn describe_addresses(
        &self,
        allocation_ids: &[String],
    ) -> impl std::future::Future<Output = Result<Vec<AddressState>, CloudError>> + Send;

    /// AssociateAddress(AllocationId, NetworkInterfaceId, PrivateIpAddress, AllowReassociation=true).
    /// Returns the new association id.
    fn associate(
        &self,
        allocation_id: &str,
        target: &Placement,
    ) -> impl std::future::Future<Output = Result<String, CloudError>> + Send;

    /// DisassociateAddress by association id: a compare-and-swap (stale id => `StaleAssociation`).
    fn disassociate(
        &self,
        association_id: &str,
    ) -> impl std::future::Future<Output = Result<(), CloudError>> + Send;

    /// Writes this node's witness stamp as a tag on its own ENI (CreateTags).
    fn write_witness(
        &self,
        eni_id: &str,
        node: &str,
        now: SystemTime,
    ) -> impl std::future::Future<Output = Result<(), CloudError>> + Send;

    /// Reads the witness stamps of these ENIs (one DescribeNetworkInterfaces call) and the state
    /// of the instances they are attached to (one DescribeInstanceStatus call, only when some
    /// are attached). A failed instance-status read leaves `instances` empty and the stamps
    /// stand: the witness works with the permissions it always needed.
    fn read_witnesses(
        &self,
        eni_ids: &[String],
    ) -> impl std::future::Future<Output = Result<WitnessRead, CloudError>> + Send;

    /// Makes sure the ENI has a secondary private IP (AssignPrivateIpAddresses only when missing);
    /// returns it.
    fn ensure_secondary_ip(
        &self,
        eni_id: &str,
    ) -> impl std::future::Future<Output = Result<Ipv4Addr, CloudError>> + Send;
}
