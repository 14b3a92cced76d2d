variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

variable "cluster_name" {
  description = "Value of the edgelb-cluster tag on the ENIs, EIPs and the IAM role. The IAM policy only lets a role move EIPs and tag ENIs that carry the same value, so two clusters in one account cannot touch each other."
  type        = string
  default     = "edgelb"
}

variable "admin_cidr" {
  description = "CIDR allowed to reach SSH (22) and the edgelb dashboard/API (9022/9023), e.g. your office or VPN egress \"203.0.113.0/24\"."
  type        = string

  validation {
    condition     = can(cidrhost(var.admin_cidr, 0)) && var.admin_cidr != "0.0.0.0/0"
    error_message = "admin_cidr must be a CIDR and must not be 0.0.0.0/0."
  }
}

variable "ssh_key_name" {
  description = "Name of an existing EC2 key pair for SSH, or null for none (use SSM Session Manager instead)."
  type        = string
  default     = null
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.0.0.0/16"
}

variable "subnet_cidr" {
  description = "CIDR of the single public subnet that holds the edge and backend nodes."
  type        = string
  default     = "10.0.0.0/24"
}

variable "availability_zone" {
  description = "Availability zone of the subnet; null = the region's first one. (An EIP can only move between ENIs of the same network border group, i.e. the same region.)"
  type        = string
  default     = null
}

variable "edge_nodes" {
  description = "The two edge nodes: name (also the host name and the edgelb node name) => static primary and secondary private IP of its ENI. The primary carries the node's own EIP, the secondary receives the peer's EIP on takeover."
  type = map(object({
    primary_ip   = string
    secondary_ip = string
  }))
  default = {
    "edge-a" = { primary_ip = "10.0.0.10", secondary_ip = "10.0.0.11" }
    "edge-b" = { primary_ip = "10.0.0.20", secondary_ip = "10.0.0.21" }
  }

  validation {
    condition     = length(var.edge_nodes) == 2
    error_message = "edgelb runs as a pair: exactly two edge nodes."
  }
}

variable "backend_private_ips" {
  description = "Static private IPs of the web backends (one instance each)."
  type        = list(string)
  default     = ["10.0.0.101", "10.0.0.102", "10.0.0.103"]
}

variable "edge_instance_type" {
  description = "Instance type of the edge nodes."
  type        = string
  default     = "t3.small"
}

variable "backend_instance_type" {
  description = "Instance type of the web backends."
  type        = string
  default     = "t3.micro"
}

variable "edgelb_deb_url" {
  description = "HTTPS URL cloud-init downloads the edgelb .deb from at first boot (e.g. a pre-signed S3 URL or your package repository). Build it with `cargo deb`."
  type        = string
}

variable "cluster_key" {
  description = "Shared heartbeat secret written to /etc/edgelb/cluster.key on both nodes; null = generate one. It ends up in the Terraform state and in user data; see the README for the SSM Parameter Store alternative."
  type        = string
  default     = null
  sensitive   = true
}

variable "admin_token" {
  description = "Token for the dashboard/API admin actions written to /etc/edgelb/admin.token; null = generate one."
  type        = string
  default     = null
  sensitive   = true
}

variable "read_token" {
  description = "Token for the read-only stats routes (/stats.json, CSV, /metrics) written to /etc/edgelb/read.token; null = generate one."
  type        = string
  default     = null
  sensitive   = true
}

variable "create_ec2_endpoint" {
  description = "Create an interface VPC endpoint for the EC2 API. A node whose own EIP is parked on its peer (after a failover) has no public IP; without this endpoint (or a NAT gateway) it cannot reach the EC2 API to take its EIP back."
  type        = bool
  default     = true
}
