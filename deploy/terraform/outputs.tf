output "edge_public_ips" {
  description = "Elastic IPs by owning node: point DNS at both."
  value       = { for name, eip in aws_eip.edge : name => eip.public_ip }
}

output "eip_allocation_ids" {
  description = "Allocation ids by owning node ([[eip]] allocation_id in edgelb.toml)."
  value       = { for name, eip in aws_eip.edge : name => eip.allocation_id }
}

output "edge_eni_ids" {
  description = "ENI id of each edge node (the edgelb:witness tag is written here)."
  value       = { for name, eni in aws_network_interface.edge : name => eni.id }
}

output "edge_private_ips" {
  description = "Primary and secondary private IP of each edge node."
  value       = { for name, eni in aws_network_interface.edge : name => eni.private_ip_list }
}

output "edge_instance_ids" {
  description = "Instance id of each edge node."
  value       = { for name, i in aws_instance.edge : name => i.id }
}

output "backend_private_ips" {
  description = "Private IPs of the web backends."
  value       = aws_instance.backend[*].private_ip
}

output "edgelb_toml" {
  description = "The /etc/edgelb/edgelb.toml written to both edge nodes."
  value       = local.edgelb_toml
}

output "admin_token" {
  description = "Token for the dashboard/API admin actions (terraform output -raw admin_token)."
  value       = local.admin_token
  sensitive   = true
}

output "read_token" {
  description = "Token for the read-only stats routes: Prometheus, the HAProxy exporter, the dashboard (terraform output -raw read_token)."
  value       = local.read_token
  sensitive   = true
}
