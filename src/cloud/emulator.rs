//! An EC2 world inside an EC2 API emulator (moto), for `edgelb demo` and the tests: a VPC, a
//! subnet, and N nodes each with an instance, one ENI with a primary and secondary private IPs,
//! and its own Elastic IP on the primary IP, like the seed's Terraform builds on AWS.
//!
//! `PATCHED_MOTO` is a small moto server wrapper that makes moto honour and check
//! `PrivateIpAddress` on AssociateAddress (stock moto ignores it), so placement on a node's
//! *secondary* IP is real. Nothing here is used on AWS.

use std::net::Ipv4Addr;

use aws_sdk_ec2::types::{DomainType, InstanceType, ResourceType, Tag, TagSpecification};

/// The patched moto server (same CLI as `moto_server`: `-H HOST -p PORT`).
pub const PATCHED_MOTO: &str = include_str!("../../deploy/demo/moto_server.py");

/// Any AMI id from moto's catalogue (moto does not validate AMIs by default).
const AMI: &str = "ami-760aaa0f";
/// Node i has primary 10.0.1.(10i+10) and secondaries 10.0.1.(10i+11)...
const SUBNET_PREFIX: [u8; 3] = [10, 0, 1];
pub const MAX_NODES: usize = 20;

/// One node of the emulated world.
#[derive(Debug, Clone)]
pub struct EmuNode {
    /// `nodeA`, `nodeB`, ...
    pub name: String,
    pub instance_id: String,
    pub eni_id: String,
    pub mac: String,
    pub primary_ip: Ipv4Addr,
    /// Secondary private IPs, first one first.
    pub secondary_ips: Vec<Ipv4Addr>,
    pub allocation_id: String,
    pub public_ip: Ipv4Addr,
    /// The association made while building (stale once the EIP moves).
    pub association_id: String,
}

#[derive(Debug, Clone)]
pub struct EmuWorld {
    pub vpc_id: String,
    pub subnet_id: String,
    pub nodes: Vec<EmuNode>,
}

fn err<E: std::error::Error + 'static>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {}", crate::cloud::aws::error_chain(&e))
}

/// Builds the world with `nodes` nodes (1..=20), each with `secondaries` (1..=9) secondary IPs.
pub async fn build_world(
    client: &aws_sdk_ec2::Client,
    region: &str,
    nodes: usize,
    secondaries: usize,
) -> Result<EmuWorld, String> {
    if !(1..=MAX_NODES).contains(&nodes) || !(1..=9).contains(&secondaries) {
        return Err(format!("1..={MAX_NODES} nodes and 1..=9 secondary IPs"));
    }
    let vpc_id = client
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .map_err(err("CreateVpc"))?
        .vpc
        .and_then(|v| v.vpc_id)
        .ok_or("CreateVpc: no vpc id")?;
    let subnet_id = client
        .create_subnet()
        .vpc_id(&vpc_id)
        .cidr_block("10.0.1.0/24")
        .availability_zone(format!("{region}a"))
        .send()
        .await
        .map_err(err("CreateSubnet"))?
        .subnet
        .and_then(|s| s.subnet_id)
        .ok_or("CreateSubnet: no subnet id")?;
    let mut built = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let host = 10 * (i as u8 + 1);
        let [a, b, c] = SUBNET_PREFIX;
        let primary_ip = Ipv4Addr::new(a, b, c, host);
        let secondary_ips: Vec<Ipv4Addr> = (1..=secondaries as u8)
            .map(|k| Ipv4Addr::new(a, b, c, host + k))
            .collect();
        let name = format!("node{}", (b'A' + i as u8) as char);
        let inst = client
            .run_instances()
            .image_id(AMI)
            .min_count(1)
            .max_count(1)
            .instance_type(InstanceType::T3Micro)
            .subnet_id(&subnet_id)
            .private_ip_address(primary_ip.to_string())
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(Tag::builder().key("Name").value(&name).build())
                    .build(),
            )
            .send()
            .await
            .map_err(err("RunInstances"))?;
        let inst = inst
            .instances()
            .first()
            .ok_or("RunInstances: no instance")?;
        let instance_id = inst.instance_id().ok_or("no instance id")?.to_string();
        let eni_id = inst
            .network_interfaces()
            .first()
            .and_then(|n| n.network_interface_id())
            .ok_or("no instance ENI")?
            .to_string();
        client
            .assign_private_ip_addresses()
            .network_interface_id(&eni_id)
            .set_private_ip_addresses(Some(
                secondary_ips.iter().map(|ip| ip.to_string()).collect(),
            ))
            .send()
            .await
            .map_err(err("AssignPrivateIpAddresses"))?;
        let eni = client
            .describe_network_interfaces()
            .network_interface_ids(&eni_id)
            .send()
            .await
            .map_err(err("DescribeNetworkInterfaces"))?;
        let mac = eni
            .network_interfaces()
            .first()
            .and_then(|n| n.mac_address())
            .ok_or("no ENI MAC")?
            .to_string();
        let alloc = client
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .map_err(err("AllocateAddress"))?;
        let allocation_id = alloc.allocation_id().ok_or("no allocation id")?.to_string();
        let public_ip = alloc
            .public_ip()
            .and_then(|p| p.parse().ok())
            .ok_or("no public IPv4")?;
        let association_id = client
            .associate_address()
            .allocation_id(&allocation_id)
            .network_interface_id(&eni_id)
            .private_ip_address(primary_ip.to_string())
            .send()
            .await
            .map_err(err("AssociateAddress"))?
            .association_id()
            .ok_or("no association id")?
            .to_string();
        built.push(EmuNode {
            name,
            instance_id,
            eni_id,
            mac,
            primary_ip,
            secondary_ips,
            allocation_id,
            public_ip,
            association_id,
        });
    }
    Ok(EmuWorld {
        vpc_id,
        subnet_id,
        nodes: built,
    })
}
