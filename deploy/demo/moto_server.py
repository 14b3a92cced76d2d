#!/usr/bin/env python3
"""moto_server with the Elastic-IP-on-a-secondary-private-IP gaps patched in-process.

Same CLI as `moto_server` (`-H 127.0.0.1 -p PORT`). Stock moto 5.2 ignores
AssociateAddress.PrivateIpAddress (DescribeAddresses always shows the ENI's primary IP), never
checks that the IP belongs to the ENI, lets two EIPs share one private IP and reports
InstanceId="" for ENI associations. edgelb's failover is exactly "move the peer's EIP onto *my
secondary* IP", so the tests need those four things to behave like EC2:

  * AssociateAddress records PrivateIpAddress (default: the ENI's primary IP) and rejects an IP
    that is not on the ENI with InvalidParameterValue;
  * a private IP already holding a *different* EIP is refused with Resource.AlreadyAssociated
    (AWS's documented error for that case), whatever AllowReassociation says;
  * DescribeAddresses reports that PrivateIpAddress and the InstanceId of the ENI's attachment,
    and the private-ip-address / instance-id filters use the same values;
  * InstanceId together with NetworkInterfaceId is InvalidParameterCombination, as on AWS;
  * DescribeNetworkInterfaces' addresses.private-ip-address filter matches secondary IPs too.

Everything else (CreateTags on ENIs, DescribeNetworkInterfaces tags, DryRun, stale association
ids => InvalidAssociationID.NotFound) is stock moto behaviour, which already matches EC2.
"""
import contextvars
import sys

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import elastic_ip_addresses as eip_models
from moto.ec2.responses import elastic_ip_addresses as eip_responses

Address = eip_models.ElasticAddress
Backend = eip_models.ElasticAddressBackend
Responses = eip_responses.ElasticIPAddresses

# The response layer parses PrivateIpAddress; the backend method has no parameter for it, so
# the request's value travels through a context variable (moto serves each request on its own
# thread, so this is per request).
_requested_ip = contextvars.ContextVar("requested_private_ip", default=None)


def _eni_ips(eni):
    return [p.get("PrivateIpAddress") for p in (eni.private_ip_addresses or [])] or [
        eni.private_ip_address
    ]


def _private_ip(self):
    if not self.eni:
        return None
    return getattr(self, "_edgelb_private_ip", None) or self.eni.private_ip_address


def _instance_id(self):
    if self.instance:
        return self.instance.id
    attached = getattr(self.eni, "instance", None) if self.eni else None
    return attached.id if attached else ""


Address.private_ip_address = property(_private_ip)
Address.instance_id = property(_instance_id)
_stock_filter = Address.get_filter_value


def _filter(self, name, method_name=None):
    if name == "private-ip-address":
        return self.private_ip_address
    if name == "instance-id":
        return self.instance_id or None
    return _stock_filter(self, name, method_name)


Address.get_filter_value = _filter

# DescribeNetworkInterfaces `addresses.private-ip-address` matches any private IPv4 of the ENI on
# EC2 (a node finds its peers' ENIs by their heartbeat addresses); stock moto checks only one.
from moto.ec2.models import elastic_network_interfaces as eni_models

_stock_eni_filter = eni_models.NetworkInterface.get_filter_value


def _eni_filter(self, name, method_name=None):
    if name == "addresses.private-ip-address":
        return [ip for ip in _eni_ips(self) if ip]
    return _stock_eni_filter(self, name, method_name)


eni_models.NetworkInterface.get_filter_value = _eni_filter


def _sync_eni_association(backend, eni):
    # Stock moto keeps one public_ip per ENI (shown as its Association); keep it equal to the EIP
    # on the ENI's primary IP so a move onto the secondary IP does not hide the owner's own EIP.
    if eni is None:
        return
    eni.public_ip = None
    for a in backend.addresses:
        if a.eni is eni and a.private_ip_address == eni.private_ip_address:
            eni.public_ip = a.public_ip


_stock_associate = Backend.associate_address


def _associate(self, instance=None, eni=None, address=None, allocation_id=None, reassociate=False):
    eip = (self.address_by_ip([address]) if address else self.address_by_allocation([allocation_id]))[0]
    target_eni = eni if eni is not None else (instance.nics[0] if instance is not None else None)
    previous_eni = eip.eni
    target_ip = None
    if target_eni is not None:
        target_ip = _requested_ip.get() or target_eni.private_ip_address
        if target_ip not in _eni_ips(target_eni):
            raise EC2ClientError(
                "InvalidParameterValue",
                f"The specified private IP address {target_ip} is not assigned to {target_eni.id}",
            )
        for other in self.addresses:
            if other is not eip and other.eni is target_eni and other.private_ip_address == target_ip:
                raise EC2ClientError(
                    "Resource.AlreadyAssociated",
                    f"resource {target_eni.id} and {target_ip} is already associated with "
                    f"public address {other.public_ip}",
                )
    result = _stock_associate(self, instance=instance, eni=eni, address=address,
                              allocation_id=allocation_id, reassociate=reassociate)
    result._edgelb_private_ip = target_ip
    if previous_eni is not result.eni:
        _sync_eni_association(self, previous_eni)
    _sync_eni_association(self, result.eni)
    return result


_stock_disassociate = Backend.disassociate_address


def _disassociate(self, address=None, association_id=None):
    eip = (self.address_by_ip([address]) if address else self.address_by_association([association_id]))[0]
    eni = eip.eni
    _stock_disassociate(self, address=address, association_id=association_id)
    eip._edgelb_private_ip = None
    _sync_eni_association(self, eni)


Backend.associate_address = _associate
Backend.disassociate_address = _disassociate

_stock_associate_response = Responses.associate_address


def _associate_response(self):
    params = self._get_params()
    if "InstanceId" in params and "NetworkInterfaceId" in params:
        raise EC2ClientError(
            "InvalidParameterCombination",
            "You may specify either an instance ID or a network interface ID, but not both",
        )
    token = _requested_ip.set(self._get_param("PrivateIpAddress"))
    try:
        return _stock_associate_response(self)
    finally:
        _requested_ip.reset(token)


Responses.associate_address = _associate_response



def _exit_with_parent(parent_pid):
    # A test process killed hard (SIGKILL on a timeout) cannot run its Drop; without this the
    # server would outlive it and keep its port. Reparenting means the parent is gone.
    import os
    import threading
    import time

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__":
    import os

    from moto.server import main

    if os.environ.get("EDGELB_MOTO_PARENT_PID", "").isdigit():
        _exit_with_parent(int(os.environ["EDGELB_MOTO_PARENT_PID"]))
    main(sys.argv[1:])
