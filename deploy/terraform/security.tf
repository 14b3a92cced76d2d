# Security groups. Edge: HTTP/HTTPS from anywhere, dashboard/API and SSH from the admin CIDR only,
# heartbeat UDP 694 between the edge nodes only. Backends: HTTP from the edge nodes only.

resource "aws_security_group" "edge" {
  name        = "${var.cluster_name}-edge"
  description = "edgelb edge nodes"
  vpc_id      = aws_vpc.main.id

  tags = {
    Name = "${var.cluster_name}-edge"
  }
}

resource "aws_vpc_security_group_ingress_rule" "edge_http" {
  security_group_id = aws_security_group.edge.id
  description       = "HTTP from anywhere"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "edge_https" {
  security_group_id = aws_security_group.edge.id
  description       = "HTTPS from anywhere"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "edge_stats" {
  security_group_id = aws_security_group.edge.id
  # edgelb binds 9022/9023 on loopback unless the config says otherwise; the rendered config
  # (templates/edgelb.toml.tftpl) opens them on all addresses with read and admin tokens, and
  # this rule is what keeps everyone but admin_cidr out.
  description = "edgelb dashboard (9022) and API (9023) from the admin network"
  ip_protocol = "tcp"
  from_port   = 9022
  to_port     = 9023
  cidr_ipv4   = var.admin_cidr
}

resource "aws_vpc_security_group_ingress_rule" "edge_ssh" {
  security_group_id = aws_security_group.edge.id
  description       = "SSH from the admin network"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

resource "aws_vpc_security_group_ingress_rule" "edge_heartbeat" {
  security_group_id            = aws_security_group.edge.id
  description                  = "edgelb heartbeat between the edge nodes only"
  ip_protocol                  = "udp"
  from_port                    = 694
  to_port                      = 694
  referenced_security_group_id = aws_security_group.edge.id
}

resource "aws_vpc_security_group_ingress_rule" "edge_pmtud" {
  security_group_id = aws_security_group.edge.id
  description       = "ICMP fragmentation needed (path MTU discovery)"
  ip_protocol       = "icmp"
  from_port         = 3
  to_port           = 4
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "edge_all" {
  security_group_id = aws_security_group.edge.id
  description       = "Backends, EC2 API, package mirrors"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "backend" {
  name        = "${var.cluster_name}-backend"
  description = "web backends behind edgelb"
  vpc_id      = aws_vpc.main.id

  tags = {
    Name = "${var.cluster_name}-backend"
  }
}

resource "aws_vpc_security_group_ingress_rule" "backend_http" {
  security_group_id            = aws_security_group.backend.id
  description                  = "HTTP from the edge nodes only"
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
  referenced_security_group_id = aws_security_group.edge.id
}

resource "aws_vpc_security_group_ingress_rule" "backend_ssh" {
  security_group_id = aws_security_group.backend.id
  description       = "SSH from the admin network"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.admin_cidr
}

resource "aws_vpc_security_group_egress_rule" "backend_all" {
  security_group_id = aws_security_group.backend.id
  description       = "Package mirrors"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "endpoint" {
  name        = "${var.cluster_name}-ec2-endpoint"
  description = "EC2 API interface endpoint, reachable from the edge nodes"
  vpc_id      = aws_vpc.main.id

  tags = {
    Name = "${var.cluster_name}-ec2-endpoint"
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoint_https" {
  security_group_id            = aws_security_group.endpoint.id
  description                  = "HTTPS from the edge nodes"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.edge.id
}
