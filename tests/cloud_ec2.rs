//! The EC2 cloud layer against a real (patched) moto server on loopback: placement reads, the
//! takeover / failback calls, refusals, compare-and-swap disassociate, throttling and stalls via
//! the fault proxy, witnesses, secondary IPs, IMDSv2 discovery against the stub, and the DryRun
//! IAM self-check. Each test starts its own moto (≈1 s), so tests are independent and can run in
//! parallel (nextest runs each in its own process anyway).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, UNIX_EPOCH};

use edgelb::cloud::aws::{AwsSettings, Ec2Client, Op};
use edgelb::cloud::imds::{self, IdentityError, IdentityOverrides};
use edgelb::cloud::{CloudError, Ec2, InstanceIdentity, Placement};
use support::fault_proxy::{Fault, FaultProxy};
use support::imds_stub::{ImdsMode, ImdsStub};
use support::moto::{Moto, World};

async fn client_for(endpoint: &str) -> Ec2Client {
    Ec2Client::new(&AwsSettings::for_endpoint(endpoint), None)
        .await
        .expect("client")
}

async fn setup(nodes: usize) -> (Moto, World, Ec2Client) {
    let t = Instant::now();
    let moto = Moto::start();
    let started = t.elapsed();
    let world = World::build(&moto, nodes).await;
    eprintln!(
        "moto answered after {started:?}, {nodes}-node world built after {:?}",
        t.elapsed()
    );
    let client = client_for(moto.endpoint()).await;
    (moto, world, client)
}

#[tokio::test]
async fn describe_shows_the_world() {
    let (_moto, world, ec2) = setup(2).await;
    let mut ids = world.allocation_ids();
    ids.push("eipalloc-00000000000000000".into());

    let t = Instant::now();
    let states = ec2.describe_addresses(&ids).await.expect("describe");
    eprintln!("DescribeAddresses (first via client): {:?}", t.elapsed());
    let t = Instant::now();
    let n = 20;
    for _ in 0..n {
        ec2.describe_addresses(&ids).await.expect("describe");
    }
    eprintln!("DescribeAddresses warm mean: {:?}", t.elapsed() / n);

    // Unknown ids are simply absent (allocation-id filter), not an error.
    assert_eq!(states.len(), 2);
    for node in &world.nodes {
        let s = states
            .iter()
            .find(|s| s.allocation_id == node.allocation_id)
            .expect("node EIP listed");
        assert_eq!(s.public_ip, Some(node.public_ip));
        assert_eq!(s.placement, Some(node.home()));
        assert_eq!(s.instance_id.as_deref(), Some(node.instance_id.as_str()));
        assert_eq!(
            s.association_id.as_deref(),
            Some(node.association_id.as_str())
        );
    }
    assert!(ec2.describe_addresses(&[]).await.expect("empty").is_empty());
    let calls = ec2.api_calls().get(Op::DescribeAddresses);
    assert_eq!(calls.calls, 1 + n as u64);
    assert_eq!(calls.attempts, 1 + n as u64);
    assert_eq!(calls.errors, 0);
}

#[tokio::test]
async fn takeover_onto_secondary_ip_and_failback() {
    let (_moto, world, ec2) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));

    let t = Instant::now();
    let assoc = ec2
        .associate(&b.allocation_id, &a.takeover())
        .await
        .expect("takeover");
    eprintln!("AssociateAddress: {:?}", t.elapsed());
    assert!(assoc.starts_with("eipassoc-"));
    assert_ne!(assoc, b.association_id);

    // Ground truth (observer) and our own read agree: A's ENI *and* A's secondary IP.
    assert_eq!(
        world.placement_of(&b.allocation_id).await,
        Some(a.takeover())
    );
    let states = ec2
        .describe_addresses(std::slice::from_ref(&b.allocation_id))
        .await
        .expect("describe");
    assert_eq!(states[0].placement, Some(a.takeover()));
    assert_eq!(states[0].association_id.as_deref(), Some(assoc.as_str()));
    assert_eq!(
        states[0].instance_id.as_deref(),
        Some(a.instance_id.as_str())
    );
    // A's own EIP is untouched on its primary IP.
    assert_eq!(world.placement_of(&a.allocation_id).await, Some(a.home()));

    // Failback: the owner re-associates onto its primary; no disassociate needed.
    ec2.associate(&b.allocation_id, &b.home())
        .await
        .expect("failback");
    assert_eq!(world.placement_of(&b.allocation_id).await, Some(b.home()));
}

#[tokio::test]
async fn associate_onto_occupied_or_foreign_ip_is_refused() {
    let (_moto, world, ec2) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));

    // A's primary already carries EIP A.
    let err = ec2
        .associate(&b.allocation_id, &a.home())
        .await
        .expect_err("occupied IP");
    assert!(
        matches!(&err, CloudError::Rejected { code, .. } if code == "Resource.AlreadyAssociated"),
        "{err:?}"
    );
    // An IP that is not on the ENI.
    let foreign = Placement {
        eni_id: a.eni_id.clone(),
        private_ip: b.secondary_ip,
    };
    let err = ec2
        .associate(&b.allocation_id, &foreign)
        .await
        .expect_err("foreign IP");
    assert!(
        matches!(&err, CloudError::Rejected { code, .. } if code == "InvalidParameterValue"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // Nothing moved.
    assert_eq!(world.placement_of(&a.allocation_id).await, Some(a.home()));
    assert_eq!(world.placement_of(&b.allocation_id).await, Some(b.home()));
    assert_eq!(ec2.api_calls().get(Op::AssociateAddress).errors, 2);
}

#[tokio::test]
async fn stale_disassociate_is_stale_association_and_changes_nothing() {
    let (_moto, world, ec2) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));
    let current = ec2
        .associate(&b.allocation_id, &a.takeover())
        .await
        .expect("takeover");

    // The association observed before the move is stale now.
    let err = ec2
        .disassociate(&b.association_id)
        .await
        .expect_err("stale");
    assert!(matches!(err, CloudError::StaleAssociation(_)), "{err:?}");
    assert_eq!(
        world.placement_of(&b.allocation_id).await,
        Some(a.takeover())
    );

    // The current one works, and leaves the EIP unassociated.
    ec2.disassociate(&current).await.expect("disassociate");
    assert_eq!(world.placement_of(&b.allocation_id).await, None);
    let s = ec2
        .describe_addresses(std::slice::from_ref(&b.allocation_id))
        .await
        .expect("describe");
    assert_eq!(s[0].association_id, None);
    assert_eq!(s[0].placement, None);
    assert_eq!(s[0].instance_id, None, "moto's \"\" must read as None");
}

#[tokio::test]
async fn throttled_for_three_seconds_then_pass_succeeds() {
    let (moto, world, _) = setup(2).await;
    let proxy = FaultProxy::start(moto.endpoint());
    let ec2 = client_for(&proxy.endpoint()).await;
    let (a, b) = (world.node(0), world.node(1));

    let proxy = std::sync::Arc::new(proxy);
    proxy.throttle();
    let t = Instant::now();
    let lifter = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        lifter.pass();
    });
    let first = ec2.associate(&b.allocation_id, &a.takeover()).await;
    let first_took = t.elapsed();
    let outcome = match first {
        Ok(_) => "succeeded within the SDK's retries",
        Err(CloudError::Throttled(_)) => {
            // The caller's own retry (the reconcile loop) after the throttling ends.
            tokio::time::sleep(Duration::from_millis(3200).saturating_sub(t.elapsed())).await;
            ec2.associate(&b.allocation_id, &a.takeover())
                .await
                .expect("retry after throttling");
            "returned Throttled, caller retry succeeded"
        }
        Err(e) => panic!("unexpected {e:?}"),
    };
    eprintln!(
        "throttled 3 s: first call returned after {first_took:?} ({outcome}); attempts {}",
        ec2.api_calls().get(Op::AssociateAddress).attempts
    );
    assert_eq!(
        world.placement_of(&b.allocation_id).await,
        Some(a.takeover())
    );
    let c = proxy.count("AssociateAddress");
    assert!(c.faulted >= 1 && c.forwarded == 1, "{c:?}");
    assert_eq!(
        ec2.api_calls().get(Op::AssociateAddress).attempts,
        c.received,
        "every attempt is counted"
    );
}

#[tokio::test]
async fn two_throttles_then_success_is_retried_inside_the_call() {
    let (moto, world, _) = setup(1).await;
    let proxy = FaultProxy::start(moto.endpoint());
    // The SDK retries inside a call only when `max_attempts` > 1 (the product default is 1:
    // the failover brain retries, inside its request budget).
    let settings = AwsSettings {
        max_attempts: 3,
        ..AwsSettings::for_endpoint(proxy.endpoint())
    };
    let ec2 = Ec2Client::new(&settings, None).await.expect("client");
    proxy.fail_next_action("DescribeAddresses", 2, Fault::Throttle);
    let t = Instant::now();
    let s = ec2
        .describe_addresses(&world.allocation_ids())
        .await
        .expect("retried");
    eprintln!("2 throttles then OK: {:?}", t.elapsed());
    assert_eq!(s.len(), 1);
    assert_eq!(proxy.calls("DescribeAddresses"), 3);
    let c = ec2.api_calls().get(Op::DescribeAddresses);
    assert_eq!((c.calls, c.attempts, c.errors), (1, 3, 0));
}

#[tokio::test]
async fn stall_with_short_attempt_timeout_is_unavailable_not_a_hang() {
    let (moto, world, _) = setup(1).await;
    let proxy = FaultProxy::start(moto.endpoint());
    let settings = AwsSettings {
        attempt_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_secs(4),
        max_backoff: Duration::from_millis(500),
        max_attempts: 3,
        ..AwsSettings::for_endpoint(proxy.endpoint())
    };
    let ec2 = Ec2Client::new(&settings, None).await.expect("client");
    proxy.stall(Duration::from_secs(6));
    let t = Instant::now();
    let err = ec2
        .describe_addresses(&world.allocation_ids())
        .await
        .expect_err("stalled");
    let took = t.elapsed();
    eprintln!("6 s stall, attempt 1 s / operation 4 s: {err} after {took:?}");
    assert!(matches!(err, CloudError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        took < settings.operation_timeout + Duration::from_millis(500),
        "{took:?}"
    );
    assert!(
        proxy.calls("DescribeAddresses") >= 2,
        "timed-out attempts are retried"
    );

    proxy.pass();
    ec2.describe_addresses(&world.allocation_ids())
        .await
        .expect("recovers once the stall ends");
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_unavailable() {
    let (moto, world, _) = setup(1).await;
    let proxy = FaultProxy::start(moto.endpoint());
    let settings = AwsSettings {
        max_attempts: 2,
        max_backoff: Duration::from_millis(200),
        ..AwsSettings::for_endpoint(proxy.endpoint())
    };
    let ec2 = Ec2Client::new(&settings, None).await.expect("client");
    let ids = world.allocation_ids();

    proxy.error500();
    let err = ec2.describe_addresses(&ids).await.expect_err("500");
    assert!(matches!(err, CloudError::Unavailable(_)), "{err:?}");
    readable(&err);
    assert_eq!(proxy.calls("DescribeAddresses"), 2, "5xx is retried");

    proxy.disconnect();
    let err = ec2.describe_addresses(&ids).await.expect_err("dropped");
    assert!(matches!(err, CloudError::Unavailable(_)), "{err:?}");
    readable(&err);

    proxy.pass();
    proxy.fail_next(1, Fault::Ec2Error(403, "UnauthorizedOperation"));
    let err = ec2.describe_addresses(&ids).await.expect_err("denied");
    assert!(matches!(err, CloudError::Denied(_)), "{err:?}");
    readable(&err);
    assert!(!err.is_retryable());

    // Nothing listens here: a connect error.
    let dead = Ec2Client::new(
        &AwsSettings {
            max_attempts: 1,
            ..AwsSettings::for_endpoint(format!("http://127.0.0.1:{}", support::free_port()))
        },
        None,
    )
    .await
    .expect("client");
    let err = dead.describe_addresses(&ids).await.expect_err("refused");
    assert!(matches!(err, CloudError::Unavailable(_)), "{err:?}");
    readable(&err);
}

/// What an operator reads in the journal for an EC2 failure: one line, short, no SDK debug dump
/// (the SDK's `DisplayErrorContext` appends an ~800-character `Debug` of the whole error).
fn readable(err: &CloudError) {
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(line.len() < 300, "{} chars: {line}", line.len());
    assert!(!line.contains("DispatchFailure {"), "no Debug dump: {line}");
}

#[tokio::test]
async fn witness_write_read_round_trip() {
    let (_moto, world, ec2) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));
    let enis = world.eni_ids();
    assert!(ec2
        .read_witnesses(&enis)
        .await
        .expect("read")
        .stamps
        .is_empty());

    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    ec2.write_witness(&a.eni_id, "nodeA", t0)
        .await
        .expect("write A");
    ec2.write_witness(&b.eni_id, "node@B", t0 + Duration::from_secs(5))
        .await
        .expect("write B");
    ec2.write_witness(&a.eni_id, "nodeA", t0 + Duration::from_secs(10))
        .await
        .expect("overwrite A");

    let read = ec2.read_witnesses(&enis).await.expect("read");
    assert!(
        read.instances.iter().all(|f| f.gone.is_none()) && read.instances.len() == 2,
        "both instances running: {:?}",
        read.instances
    );
    let mut got = read.stamps;
    got.sort_by(|x, y| x.node.cmp(&y.node));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (
            got[0].node.as_str(),
            got[0].eni_id.as_str(),
            got[0].stamp_unix
        ),
        ("node@B", b.eni_id.as_str(), 1_700_000_005)
    );
    assert_eq!(
        (
            got[1].node.as_str(),
            got[1].eni_id.as_str(),
            got[1].stamp_unix
        ),
        ("nodeA", a.eni_id.as_str(), 1_700_000_010)
    );
    let c = ec2.api_calls();
    assert_eq!(c.get(Op::CreateTags).calls, 3);
    assert_eq!(
        c.get(Op::DescribeNetworkInterfaces).calls,
        2,
        "one call per read"
    );
    assert_eq!(
        c.get(Op::DescribeInstanceStatus).calls,
        2,
        "one instance-status call per read"
    );
}

/// Issue 17: the witness read carries EC2's own word on the instance behind each ENI: a stopped
/// or terminated instance, and an ENI that no longer exists, are `gone`; a running one is not.
#[tokio::test]
async fn witness_read_reports_stopped_and_terminated_instances() {
    let (_moto, world, ec2) = setup(3).await;
    let (a, b, c) = (world.node(0), world.node(1), world.node(2));
    let client = world.client();
    client
        .stop_instances()
        .instance_ids(&b.instance_id)
        .send()
        .await
        .expect("stop");
    client
        .terminate_instances()
        .instance_ids(&c.instance_id)
        .send()
        .await
        .expect("terminate");
    let mut enis = world.eni_ids();
    enis.push("eni-0000000000000dead".into());
    let read = ec2.read_witnesses(&enis).await.expect("read");
    let gone = |eni: &str| {
        read.instances
            .iter()
            .find(|f| f.eni_id == eni)
            .unwrap_or_else(|| panic!("no fact for {eni}: {:?}", read.instances))
            .gone
            .clone()
    };
    assert_eq!(gone(&a.eni_id), None);
    let b_gone = gone(&b.eni_id).expect("stopped is gone");
    assert!(
        b_gone.contains(&b.instance_id) && b_gone.contains("stopped"),
        "{b_gone}"
    );
    let c_gone = gone(&c.eni_id).expect("terminated is gone");
    assert!(
        c_gone.contains("terminated") || c_gone.contains("ENI"),
        "{c_gone}"
    );
    assert!(gone("eni-0000000000000dead")
        .expect("missing ENI is gone")
        .contains("no longer exists"));
}

#[tokio::test]
async fn ensure_secondary_ip_assigns_once_and_is_a_noop_when_present() {
    let (_moto, world, ec2) = setup(1).await;
    let a = world.node(0);

    // World ENIs already have one: no AssignPrivateIpAddresses.
    assert_eq!(
        ec2.ensure_secondary_ip(&a.eni_id).await.expect("present"),
        a.secondary_ip
    );
    assert_eq!(ec2.api_calls().get(Op::AssignPrivateIpAddresses).calls, 0);

    let bare = world.create_bare_eni(200).await;
    let ip = ec2.ensure_secondary_ip(&bare).await.expect("assigned");
    assert_ne!(ip, Ipv4Addr::new(10, 0, 1, 200));
    assert_eq!(ip.octets()[..3], [10, 0, 1]);
    assert_eq!(ec2.api_calls().get(Op::AssignPrivateIpAddresses).calls, 1);
    assert_eq!(ec2.ensure_secondary_ip(&bare).await.expect("again"), ip);
    assert_eq!(ec2.api_calls().get(Op::AssignPrivateIpAddresses).calls, 1);

    let err = ec2
        .ensure_secondary_ip("eni-00000000000000000")
        .await
        .expect_err("unknown ENI");
    assert!(matches!(err, CloudError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn dry_run_check_allows_and_changes_nothing() {
    let (moto, world, ec2) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));
    ec2.dry_run_check(&b.allocation_id, &a.takeover())
        .await
        .expect("allowed");
    assert_eq!(world.placement_of(&b.allocation_id).await, Some(b.home()));

    let proxy = FaultProxy::start(moto.endpoint());
    let via_proxy = client_for(&proxy.endpoint()).await;
    proxy.fail_next_action(
        "AssociateAddress",
        1,
        Fault::Ec2Error(403, "UnauthorizedOperation"),
    );
    let err = via_proxy
        .dry_run_check(&b.allocation_id, &a.takeover())
        .await
        .expect_err("denied");
    assert!(matches!(err, CloudError::Denied(_)), "{err:?}");
    readable(&err);
}

#[tokio::test]
async fn imds_discovery_gives_the_node_identity() {
    let (_moto, world, _) = setup(2).await;
    let b = world.node(1);
    let stub = ImdsStub::for_node(&world, 1);
    let endpoint = stub.endpoint();

    let t = Instant::now();
    let id = imds::discover(Some(&endpoint)).await.expect("discover");
    eprintln!("IMDS discovery (token + 5 paths): {:?}", t.elapsed());
    assert_eq!(
        id,
        InstanceIdentity {
            instance_id: b.instance_id.clone(),
            region: "us-east-1".into(),
            eni_id: b.eni_id.clone(),
            primary_ip: b.primary_ip,
            secondary_ip: Some(b.secondary_ip),
        }
    );
    assert_eq!(
        stub.token_requests(),
        1,
        "one token for the whole discovery"
    );

    // Token expiry: the client gets a 401, fetches a new token and carries on.
    stub.expire_tokens();
    let again = imds::discover(Some(&endpoint)).await.expect("rediscover");
    assert_eq!(again, id);

    // No secondary IP on the ENI yet.
    stub.set_path(
        &format!("network/interfaces/macs/{}/local-ipv4s", b.mac),
        Some(&b.primary_ip.to_string()),
    );
    let id = imds::discover(Some(&endpoint)).await.expect("no secondary");
    assert_eq!(id.secondary_ip, None);
}

#[tokio::test]
async fn config_overrides_win_and_skip_imds() {
    let (_moto, world, _) = setup(1).await;
    let a = world.node(0);
    let stub = ImdsStub::for_node(&world, 0);
    let endpoint = stub.endpoint();

    let full = IdentityOverrides {
        instance_id: Some("i-from-config".into()),
        region: Some("eu-west-1".into()),
        eni_id: Some(a.eni_id.clone()),
        primary_ip: Some(a.primary_ip),
        secondary_ip: Some(a.secondary_ip),
    };
    stub.set_mode(ImdsMode::Blackhole);
    let t = Instant::now();
    let id = imds::resolve_identity(&full, Some(&endpoint))
        .await
        .expect("all from config");
    assert!(t.elapsed() < Duration::from_millis(100));
    assert_eq!(id.instance_id, "i-from-config");
    assert_eq!(id.region, "eu-west-1");
    assert_eq!(stub.requests(), 0, "IMDS never contacted");

    stub.set_mode(ImdsMode::Ok);
    let partial = IdentityOverrides {
        instance_id: Some("i-from-config".into()),
        region: Some("eu-west-1".into()),
        secondary_ip: Some(Ipv4Addr::new(10, 0, 1, 99)),
        ..IdentityOverrides::default()
    };
    let id = imds::resolve_identity(&partial, Some(&endpoint))
        .await
        .expect("partial");
    assert_eq!(id.instance_id, "i-from-config");
    assert_eq!(id.region, "eu-west-1");
    assert_eq!(id.eni_id, a.eni_id);
    assert_eq!(id.primary_ip, a.primary_ip);
    assert_eq!(id.secondary_ip, Some(Ipv4Addr::new(10, 0, 1, 99)));
    let paths = stub.requested_paths();
    assert!(
        !paths
            .iter()
            .any(|p| p == "instance-id" || p == "placement/region"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn imds_unusable_fails_fast_and_clearly() {
    let (_moto, world, _) = setup(1).await;
    let stub = ImdsStub::for_node(&world, 0);
    let endpoint = stub.endpoint();

    stub.set_mode(ImdsMode::V1Only);
    let t = Instant::now();
    let err = imds::discover(Some(&endpoint)).await.expect_err("v1 only");
    eprintln!("IMDSv1-only: {err} after {:?}", t.elapsed());
    assert!(matches!(err, IdentityError::Unreachable { .. }), "{err:?}");

    stub.set_mode(ImdsMode::Blackhole);
    let t = Instant::now();
    let err = imds::discover(Some(&endpoint))
        .await
        .expect_err("blackhole");
    let took = t.elapsed();
    eprintln!("IMDS blackhole: {err} after {took:?}");
    assert!(matches!(err, IdentityError::Unreachable { .. }), "{err:?}");
    assert!(
        took < imds::IMDS_OPERATION_TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
    assert!(err.to_string().contains("give the identity in config"));
}

#[tokio::test]
async fn recorder_counts_moves_in_a_three_node_world() {
    let (_moto, world, ec2) = setup(3).await;
    let (a, c) = (world.node(0), world.node(2));
    assert_eq!(c.primary_ip, Ipv4Addr::new(10, 0, 1, 30));
    assert_eq!(c.secondary_ip, Ipv4Addr::new(10, 0, 1, 31));

    let rec = world.record_placements(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let t = Instant::now();
    ec2.associate(&c.allocation_id, &a.takeover())
        .await
        .expect("takeover");
    let took = world
        .wait_for_placement(&c.allocation_id, Some(a.takeover()), Duration::from_secs(5))
        .await;
    assert!(took < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    ec2.associate(&c.allocation_id, &c.home())
        .await
        .expect("failback");
    world
        .wait_for_placement(&c.allocation_id, Some(c.home()), Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eprintln!("takeover + failback observed within {:?}", t.elapsed());

    assert_eq!(rec.moves(&c.allocation_id), 2);
    assert_eq!(
        rec.settled_at(&c.allocation_id).map(|(_, p)| p),
        Some(Some(c.home()))
    );
    let timeline = rec.stop();
    assert_eq!(
        timeline
            .iter()
            .filter(|ch| ch.allocation_id == c.allocation_id)
            .count(),
        3,
        "{timeline:#?}"
    );
    let first_at_a = timeline
        .iter()
        .find(|ch| ch.allocation_id == c.allocation_id && ch.placement == Some(a.takeover()))
        .expect("seen on A");
    assert!(first_at_a.at >= Duration::from_millis(200));
    // Untouched EIPs: only their initial observation.
    for n in [world.node(0), world.node(1)] {
        let h: Vec<_> = timeline
            .iter()
            .filter(|ch| ch.allocation_id == n.allocation_id)
            .collect();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].placement, Some(n.home()));
    }
}

/// Set in the environment of the child process `child_process_*` tests spawn.
const CHILD_MODE: &str = "EDGELB_TEST_CHILD_MODE";
const CHILD_ALLOC: &str = "EDGELB_TEST_CHILD_ALLOC";

/// Not a test of its own: the body of the child process spawned by
/// `child_process_reaches_only_the_harness`, which exercises the *non-hermetic* path (SDK
/// environment handling, default credential chain, IMDS endpoint from the environment) the way
/// the real binary will, without touching this process's environment.
#[tokio::test]
#[ignore = "runs only as the child of child_process_reaches_only_the_harness"]
async fn child_mode() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let alloc = std::env::var(CHILD_ALLOC).expect("allocation id");
    let identity = imds::discover(None).await;
    let region = match (&identity, mode.as_str()) {
        (Ok(id), "imds") => Some(id.region.clone()),
        (Err(IdentityError::Disabled(_)), "no-imds") => None,
        (other, _) => panic!("mode {mode}: unexpected identity result {other:?}"),
    };
    let ec2 = Ec2Client::new(&AwsSettings::default(), region.as_deref())
        .await
        .expect("client from the environment");
    let states = ec2.describe_addresses(&[alloc]).await.expect("describe");
    let placement = states[0].placement.as_ref().expect("associated");
    let eni = identity.map(|i| i.eni_id).unwrap_or_default();
    println!("CHILD-RESULT eni={eni} placement={}", placement.eni_id);
}

fn run_child(mode: &str, env: &support::ChildAwsEnv, alloc: &str) -> String {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "child_mode",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    env.apply(&mut cmd);
    cmd.env(CHILD_MODE, mode).env(CHILD_ALLOC, alloc);
    let out = cmd.output().expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result line in {stdout}"))
        .to_string()
}

#[tokio::test]
async fn child_process_reaches_only_the_harness() {
    let (moto, world, _) = setup(2).await;
    let (a, b) = (world.node(0), world.node(1));
    let proxy = FaultProxy::start(moto.endpoint());
    let stub = ImdsStub::for_node(&world, 0);

    // IMDS allowed, at the stub only; EC2 through the proxy only.
    let env = support::ChildAwsEnv::new(proxy.endpoint()).with_imds(stub.endpoint());
    let line = run_child("imds", &env, &b.allocation_id);
    assert_eq!(line, format!("eni={} placement={}", a.eni_id, b.eni_id));
    assert!(stub.token_requests() >= 1);
    assert_eq!(proxy.calls("DescribeAddresses"), 1);

    // IMDS disabled: discovery refuses at once, EC2 still reachable with env credentials.
    let env = support::ChildAwsEnv::new(proxy.endpoint());
    let before = stub.requests();
    let line = run_child("no-imds", &env, &a.allocation_id);
    assert_eq!(line, format!("eni= placement={}", a.eni_id));
    assert_eq!(stub.requests(), before);
    assert_eq!(proxy.calls("DescribeAddresses"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_eni_is_found_by_one_of_its_private_ips() {
    let (_moto, world, ec2) = setup(2).await;
    let b = world.node(1);
    for ip in [b.primary_ip, b.secondary_ip] {
        let found = ec2
            .eni_slots("addresses.private-ip-address", &ip.to_string())
            .await
            .expect("DescribeNetworkInterfaces");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].eni_id, b.eni_id);
        assert_eq!(found[0].primary_ip, b.primary_ip);
        assert_eq!(found[0].secondary_ips, vec![b.secondary_ip]);
    }
    let none = ec2
        .eni_slots("addresses.private-ip-address", "10.0.1.99")
        .await
        .expect("call");
    assert!(none.is_empty());
}
