# Three node.js web backends, as in the seed; port 80 is open to the edge nodes only.

resource "aws_instance" "backend" {
  count = length(var.backend_private_ips)

  ami                         = data.aws_ami.ubuntu.id
  instance_type               = var.backend_instance_type
  key_name                    = var.ssh_key_name
  subnet_id                   = aws_subnet.public.id
  private_ip                  = var.backend_private_ips[count.index]
  vpc_security_group_ids      = [aws_security_group.backend.id]
  associate_public_ip_address = true # package downloads only; the security group admits no web traffic

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    encrypted   = true
  }

  user_data = templatefile("${path.module}/templates/backend-cloud-init.yaml.tftpl", {
    index = count.index + 1
  })

  tags = {
    Name = "${var.cluster_name}-web-${count.index + 1}"
  }

  depends_on = [aws_route_table_association.public]
}
