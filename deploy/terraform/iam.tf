# Instance profile of the edge nodes: exactly the EC2 calls edgelb makes (deploy/iam-policy.json).
# The policy compares each resource's edgelb-cluster tag with the role's own edgelb-cluster tag
# (aws:PrincipalTag), so the JSON file is used as is, with no per-cluster edits.

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "edge" {
  name               = "${var.cluster_name}-edge"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json

  # Read by the policy as aws:PrincipalTag/edgelb-cluster (also set by the provider's default_tags;
  # repeated here because the policy depends on it).
  tags = {
    "edgelb-cluster" = var.cluster_name
  }
}

resource "aws_iam_role_policy" "edge" {
  name   = "edgelb-eip-failover"
  role   = aws_iam_role.edge.id
  policy = file("${path.module}/../iam-policy.json")
}

resource "aws_iam_instance_profile" "edge" {
  name = "${var.cluster_name}-edge"
  role = aws_iam_role.edge.name
}
