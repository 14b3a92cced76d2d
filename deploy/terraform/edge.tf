# The two edge nodes: one ENI each with a static primary and secondary private IP, an EIP on the
# primary, IMDSv2 only, the edgelb instance profile, and cloud-init that installs and starts edgelb.

data "aws_ami" "ubuntu" {
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

resource "random_password" "cluster_key" {
  length  = 48
  special = false
}

resource "random_password" "admin_token" {
  length  = 40
  special = false
}

resource "random_password" "read_token" {
  length  = 40
  special = false
}

locals {
  cluster_key = coalesce(var.cluster_key, random_password.cluster_key.result)
  admin_token = coalesce(var.admin_token, random_password.admin_token.result)
  read_token  = coalesce(var.read_token, random_password.read_token.result)

  # One configuration for both nodes; each node finds itself by host name.
  edgelb_toml = templatefile("${path.module}/templates/edgelb.toml.tftpl", {
    region = var.region
    nodes  = var.edge_nodes
    eips = {
      for name, eip in aws_eip.edge : name => {
        allocation_id = eip.allocation_id
        public_ip     = eip.public_ip
      }
    }
    backends = [
      for b in aws_instance.backend : {
        name    = b.private_dns
        address = "${b.private_ip}:80"
      }
    ]
  })
}

resource "aws_network_interface" "edge" {
  for_each = var.edge_nodes

  subnet_id       = aws_subnet.public.id
  security_groups = [aws_security_group.edge.id]
  # The first entry is the primary private IP.
  private_ip_list_enabled = true
  private_ip_list         = [each.value.primary_ip, each.value.secondary_ip]

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }
}

# Each node's own EIP, first associated with its primary private IP. From then on edgelb owns the
# association (it moves the EIP to the peer's secondary IP on failover and back on failback), so
# Terraform ignores where the EIP currently points: an apply during a failover must not undo it.
resource "aws_eip" "edge" {
  for_each = var.edge_nodes

  domain                    = "vpc"
  network_interface         = aws_network_interface.edge[each.key].id
  associate_with_private_ip = each.value.primary_ip

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }

  depends_on = [aws_internet_gateway.main]

  lifecycle {
    ignore_changes = [network_interface, associate_with_private_ip, instance]
  }
}

resource "aws_instance" "edge" {
  for_each = var.edge_nodes

  ami                  = data.aws_ami.ubuntu.id
  instance_type        = var.edge_instance_type
  key_name             = var.ssh_key_name
  iam_instance_profile = aws_iam_instance_profile.edge.name

  network_interface {
    network_interface_id = aws_network_interface.edge[each.key].id
    device_index         = 0
  }

  # IMDSv2 only; hop limit 1 keeps the credentials away from containers on the node.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 16
    encrypted   = true
  }

  user_data = templatefile("${path.module}/templates/edge-cloud-init.yaml.tftpl", {
    node_name   = each.key
    deb_url     = var.edgelb_deb_url
    edgelb_toml = local.edgelb_toml
    cluster_key = local.cluster_key
    admin_token = local.admin_token
    read_token  = local.read_token
  })
  # Changing the config later is an edgelb reload, not a new instance.
  user_data_replace_on_change = false

  tags = {
    Name = "${var.cluster_name}-${each.key}"
  }

  # The EIP gives the node its internet access for the first boot (package downloads).
  depends_on = [aws_eip.edge, aws_route_table_association.public]

  lifecycle {
    ignore_changes = [ami, user_data]
  }
}
